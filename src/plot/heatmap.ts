/**
 * Attention weights as pictures: one heatmap per head, queries down the side and keys along the bottom, each
 * labelled with its token; darker is more weight. A standalone SVG, like the loss plot (./svg.ts).
 */
import { escapeXml } from "./svg.js";

export interface Heatmap {
  title: string;
  /** rows × columns, values in [0, 1] */
  values: number[][];
}

export interface HeatmapGrid {
  title?: string;
  rowLabels: string[];
  columnLabels: string[];
  maps: Heatmap[];
}

/** white → dark blue for 0 → 1 */
function shade(v: number): string {
  const t = Math.min(1, Math.max(0, v));
  const mix = (a: number, b: number) => Math.round(a + (b - a) * t);
  return `rgb(${mix(255, 8)},${mix(255, 48)},${mix(255, 107)})`;
}

/** A token as an axis label: newlines and tabs spelled out, a token of spaces shown as ␣. */
export function tokenLabel(token: string): string {
  const shown = token.replace(/\n/g, "\\n").replace(/\t/g, "\\t").trim();
  const label = shown || "␣".repeat(Math.max(1, token.length));
  return label.length > 14 ? `${label.slice(0, 13)}…` : label;
}

export function heatmapGridSvg(grid: HeatmapGrid): string {
  const rows = grid.rowLabels.length;
  const cols = grid.columnLabels.length;
  const cell = Math.max(8, Math.min(32, Math.floor(360 / Math.max(rows, cols))));
  const font = Math.min(12, Math.max(7, cell - 4));
  const labelWidth =
    Math.ceil(0.62 * font * Math.max(1, ...[...grid.rowLabels, ...grid.columnLabels].map((l) => l.length))) + 8;
  const panelW = labelWidth + cols * cell + 24;
  const panelH = 28 + rows * cell + labelWidth;
  // a near-square grid of panels (12 heads: 4 × 3), no wider than about 1200 px
  const perRow = Math.max(1, Math.min(Math.ceil(Math.sqrt(grid.maps.length)), Math.floor(1200 / panelW)));
  const top = grid.title ? 36 : 8;
  const W = perRow * panelW + 16;
  const H = top + Math.ceil(grid.maps.length / perRow) * panelH + 40;
  const showValues = cell >= 28;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="${font}">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
  ];
  if (grid.title)
    out.push(`<text x="${W / 2}" y="24" text-anchor="middle" font-size="15">${escapeXml(grid.title)}</text>`);
  grid.maps.forEach((map, m) => {
    const x0 = 8 + (m % perRow) * panelW + labelWidth;
    const y0 = top + Math.floor(m / perRow) * panelH + 24;
    out.push(
      `<text x="${x0 + (cols * cell) / 2}" y="${y0 - 8}" text-anchor="middle" font-size="13">${escapeXml(map.title)}</text>`,
    );
    map.values.forEach((row, i) =>
      row.forEach((v, j) => {
        const x = x0 + j * cell;
        const y = y0 + i * cell;
        out.push(
          `<rect x="${x}" y="${y}" width="${cell}" height="${cell}" fill="${shade(v)}"><title>${v.toFixed(4)}</title></rect>`,
        );
        if (showValues && v > 0)
          out.push(
            `<text x="${x + cell / 2}" y="${y + cell / 2 + 3}" text-anchor="middle" font-size="9" fill="${v > 0.5 ? "white" : "black"}">${v.toFixed(2)}</text>`,
          );
      }),
    );
    out.push(`<rect x="${x0}" y="${y0}" width="${cols * cell}" height="${rows * cell}" fill="none" stroke="#333"/>`);
    grid.rowLabels.forEach((l, i) =>
      out.push(
        `<text x="${x0 - 4}" y="${y0 + i * cell + cell / 2 + font / 3}" text-anchor="end">${escapeXml(l)}</text>`,
      ),
    );
    grid.columnLabels.forEach((l, j) => {
      const x = x0 + j * cell + cell / 2 + font / 3;
      const y = y0 + rows * cell + 4;
      out.push(`<text transform="translate(${x} ${y}) rotate(-90)" text-anchor="end">${escapeXml(l)}</text>`);
    });
  });
  // the colour scale
  const barX = 8 + labelWidth;
  const barY = H - 24;
  for (let k = 0; k < 10; k++)
    out.push(
      `<rect x="${barX + 40 + k * 16}" y="${barY - 10}" width="16" height="10" fill="${shade((k + 0.5) / 10)}"/>`,
    );
  out.push(`<text x="${barX + 34}" y="${barY}" text-anchor="end">0</text>`);
  out.push(`<text x="${barX + 206}" y="${barY}">1</text>`);
  out.push(`</svg>`);
  return out.join("\n") + "\n";
}
