/**
 * A line chart as a standalone SVG string: axes with round-number ticks, one polyline per series, a legend.
 * Small on purpose — enough for the book's loss plot (train and validation loss against tokens seen) and
 * readable in any browser or image viewer, with no plotting dependency.
 */

export interface Series {
  label: string;
  /** CSS colour */
  color: string;
  /** [x, y] pairs, in any order of x */
  points: [number, number][];
  dashed?: boolean;
}

export interface LinePlot {
  title?: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  width?: number;
  height?: number;
}

/** Round tick positions covering [lo, hi]: steps of 1, 2 or 5 × 10^k, about `count` intervals. */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) {
    const pad = Math.abs(lo) > 0 ? Math.abs(lo) * 0.1 : 1;
    return niceTicks(lo - pad, hi + pad, count);
  }
  const raw = (hi - lo) / count;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  // from the last tick at or below lo to the first at or above hi, so the axis covers every point
  const first = Math.floor(lo / step + 1e-9);
  const last = Math.ceil(hi / step - 1e-9);
  const ticks: number[] = [];
  for (let i = first; i <= last; i++) ticks.push(Number((i * step).toPrecision(12)));
  return ticks;
}

/** 1234567 → "1.2M", 0.25 → "0.25": short tick labels. */
export function formatTick(v: number): string {
  const a = Math.abs(v);
  if (a >= 1e9) return `${Number((v / 1e9).toPrecision(3))}G`;
  if (a >= 1e6) return `${Number((v / 1e6).toPrecision(3))}M`;
  if (a >= 1e4) return `${Number((v / 1e3).toPrecision(3))}k`;
  return String(Number(v.toPrecision(4)));
}

export function escapeXml(s: string): string {
  return s.replace(/[<>&"']/g, (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;", "'": "&apos;" })[c]!);
}

export function linePlotSvg(plot: LinePlot): string {
  const W = plot.width ?? 640;
  const H = plot.height ?? 400;
  const margin = { left: 64, right: 20, top: plot.title ? 40 : 20, bottom: 52 };
  const pw = W - margin.left - margin.right;
  const ph = H - margin.top - margin.bottom;
  const all = plot.series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  const xs = all.map((p) => p[0]);
  const ys = all.map((p) => p[1]);
  const xTicks = niceTicks(xs.length ? Math.min(...xs) : 0, xs.length ? Math.max(...xs) : 1);
  const yTicks = niceTicks(ys.length ? Math.min(0, ...ys) : 0, ys.length ? Math.max(...ys) : 1);
  const [x0, x1] = [xTicks[0], xTicks[xTicks.length - 1]];
  const [y0, y1] = [yTicks[0], yTicks[yTicks.length - 1]];
  const sx = (x: number) => margin.left + ((x - x0) / (x1 - x0 || 1)) * pw;
  const sy = (y: number) => margin.top + ph - ((y - y0) / (y1 - y0 || 1)) * ph;
  const f = (v: number) => v.toFixed(1);

  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
  );
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  if (plot.title)
    out.push(`<text x="${W / 2}" y="24" text-anchor="middle" font-size="15">${escapeXml(plot.title)}</text>`);
  // grid and ticks
  for (const t of yTicks) {
    out.push(`<line x1="${margin.left}" x2="${margin.left + pw}" y1="${f(sy(t))}" y2="${f(sy(t))}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${margin.left - 6}" y="${f(sy(t) + 4)}" text-anchor="end">${formatTick(t)}</text>`);
  }
  for (const t of xTicks) {
    out.push(`<line x1="${f(sx(t))}" x2="${f(sx(t))}" y1="${margin.top}" y2="${margin.top + ph}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${f(sx(t))}" y="${margin.top + ph + 16}" text-anchor="middle">${formatTick(t)}</text>`);
  }
  out.push(`<rect x="${margin.left}" y="${margin.top}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
  out.push(`<text x="${margin.left + pw / 2}" y="${H - 12}" text-anchor="middle">${escapeXml(plot.xLabel)}</text>`);
  out.push(
    `<text transform="translate(16 ${margin.top + ph / 2}) rotate(-90)" text-anchor="middle">${escapeXml(plot.yLabel)}</text>`,
  );
  // series
  for (const s of plot.series) {
    const pts = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y)).sort((a, b) => a[0] - b[0]);
    if (pts.length === 0) continue;
    const dash = s.dashed ? ` stroke-dasharray="6 4"` : "";
    const d = pts.map(([x, y]) => `${f(sx(x))},${f(sy(y))}`).join(" ");
    out.push(`<polyline points="${d}" fill="none" stroke="${s.color}" stroke-width="2"${dash}/>`);
  }
  // legend, top right inside the plot
  plot.series.forEach((s, i) => {
    const y = margin.top + 16 + i * 18;
    const x = margin.left + pw - 130;
    const dash = s.dashed ? ` stroke-dasharray="6 4"` : "";
    out.push(
      `<line x1="${x}" x2="${x + 24}" y1="${y - 4}" y2="${y - 4}" stroke="${s.color}" stroke-width="2"${dash}/>`,
    );
    out.push(`<text x="${x + 30}" y="${y}">${escapeXml(s.label)}</text>`);
  });
  out.push(`</svg>`);
  return out.join("\n") + "\n";
}
