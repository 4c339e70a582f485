/**
 * A real HTTP server on 127.0.0.1 (random port) for download tests. It serves in-memory files with Range
 * support and can misbehave on purpose: drop the connection after N bytes, ignore Range, redirect.
 * Every request is logged so tests can check what the client asked for.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";

export interface Route {
  body: Buffer;
  /** Destroy the socket after sending this many body bytes, for the first `dropTimes` requests (default 1). */
  dropAfter?: number;
  dropTimes?: number;
  /** Answer every request with the full body and 200, as servers without Range support do. */
  ignoreRange?: boolean;
  /** Accept the request and never answer (for timeouts). */
  stall?: boolean;
  /** Extra response headers (e.g. Hugging Face's X-Linked-Etag) on 200 and 206 answers. */
  headers?: http.OutgoingHttpHeaders;
}

export interface RequestLog {
  path: string;
  range?: string;
  status: number;
}

export interface TestServer {
  /** e.g. "http://127.0.0.1:41234/" */
  baseUrl: string;
  url(path: string): string;
  requests: RequestLog[];
  /** Add or replace a route: a path such as "/the-verdict.txt" (as sent, percent-encoded). */
  set(path: string, route: Route | Buffer): void;
  /** Answer `from` with a 302 to `to`, with extra `headers` if given. */
  redirect(from: string, to: string, headers?: http.OutgoingHttpHeaders): void;
  close(): Promise<void>;
}

export async function startTestServer(routes: Record<string, Route | Buffer> = {}): Promise<TestServer> {
  const table = new Map<string, Route>();
  const redirects = new Map<string, { to: string; headers?: http.OutgoingHttpHeaders }>();
  const drops = new Map<string, number>();
  const requests: RequestLog[] = [];
  const set = (path: string, route: Route | Buffer) =>
    table.set(path, Buffer.isBuffer(route) ? { body: route } : route);
  for (const [path, route] of Object.entries(routes)) set(path, route);

  const server = http.createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    const range = req.headers.range;
    const log = (status: number) => requests.push({ path, range, status });

    const target = redirects.get(path);
    if (target !== undefined) {
      log(302);
      res.writeHead(302, { ...target.headers, location: target.to }).end();
      return;
    }
    const route = table.get(path);
    if (!route) {
      log(404);
      res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
      return;
    }
    if (route.stall) {
      log(0);
      return;
    }
    const size = route.body.length;
    let start = 0;
    let status = 200;
    const headers: http.OutgoingHttpHeaders = {
      ...route.headers,
      "content-type": "application/octet-stream",
      "accept-ranges": "bytes",
    };
    const m = range && !route.ignoreRange ? /^bytes=(\d+)-$/.exec(range) : null;
    if (m) {
      start = Number(m[1]);
      if (start >= size) {
        log(416);
        res.writeHead(416, { "content-range": `bytes */${size}` }).end();
        return;
      }
      status = 206;
      headers["content-range"] = `bytes ${start}-${size - 1}/${size}`;
    }
    headers["content-length"] = size - start;
    log(status);
    res.writeHead(status, headers);

    const dropped = drops.get(path) ?? 0;
    if (route.dropAfter !== undefined && dropped < (route.dropTimes ?? 1)) {
      drops.set(path, dropped + 1);
      const end = Math.min(size, start + route.dropAfter);
      // Destroy only once the bytes have been handed to the kernel, so the client sees exactly `dropAfter`.
      res.write(route.body.subarray(start, end), () => res.socket?.destroy());
      return;
    }
    res.end(route.body.subarray(start));
  });

  await new Promise<void>((resolvePromise) => server.listen(0, "127.0.0.1", resolvePromise));
  const { port } = server.address() as AddressInfo;
  const baseUrl = `http://127.0.0.1:${port}/`;
  return {
    baseUrl,
    url: (path) => new URL(path.replace(/^\//, ""), baseUrl).href,
    requests,
    set,
    redirect: (from, to, headers) => redirects.set(from, { to, headers }),
    close: () =>
      new Promise<void>((resolvePromise) => {
        server.closeAllConnections();
        server.close(() => resolvePromise());
      }),
  };
}

/** A port on 127.0.0.1 with nothing listening (bound, then released), for "connection refused". */
export async function unusedPort(): Promise<number> {
  const server = http.createServer();
  await new Promise<void>((resolvePromise) => server.listen(0, "127.0.0.1", resolvePromise));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolvePromise) => server.close(() => resolvePromise()));
  return port;
}
