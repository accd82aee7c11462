/** Plain text for people: aligned columns, no colours, nothing a pipe to grep or less would mangle. */

export type Cell = string | number | boolean | null | undefined;

export function cell(value: Cell): string {
  if (value === null || value === undefined || value === '') return '-';
  return String(value);
}

/** Columns padded to their widest cell, two spaces apart, a header row first; the last column is not padded. */
export function table(headers: string[], rows: Cell[][]): string {
  const text = [headers, ...rows.map((row) => row.map(cell))];
  const widths = headers.map((_, i) => Math.max(...text.map((row) => (row[i] ?? '').length)));
  return text.map((row) => row.map((value, i) => (i === row.length - 1 ? value : value.padEnd(widths[i]))).join('  ').trimEnd()).join('\n');
}

/** `label: value` lines with the values aligned. */
export function keyValues(pairs: Array<[string, Cell]>): string {
  const width = Math.max(...pairs.map(([key]) => key.length));
  return pairs.map(([key, value]) => `${(key + ':').padEnd(width + 1)} ${cell(value)}`).join('\n');
}

const BARS = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/**
 * One character per value, scaled to the largest. Zero is the lowest bar and any value above zero
 * at least the second, so a quiet hour and an hour with one event look different.
 */
export function sparkline(values: number[]): string {
  const max = Math.max(0, ...values);
  return values
    .map((value) => {
      if (!(value > 0) || max === 0) return BARS[0];
      return BARS[1 + Math.min(BARS.length - 2, Math.floor(((value / max) * (BARS.length - 1)) - 1e-9))];
    })
    .join('');
}

export function percent(rate: number | null | undefined): string {
  return rate === null || rate === undefined ? '-' : `${(rate * 100).toFixed(1)}%`;
}

export function ms(value: number | null | undefined): string {
  return value === null || value === undefined ? '-' : `${value} ms`;
}

/** Cuts a long cell (a URL, an error message) so that a table still fits a terminal line. */
export function clip(value: string | null | undefined, max = 60): string {
  if (!value) return '-';
  return value.length > max ? value.slice(0, max - 1) + '…' : value;
}
