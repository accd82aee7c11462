const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Parses `250ms`, `30s`, `5m`, `2h`, `1d` (or a bare number of milliseconds) into milliseconds. */
export function parseDuration(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(text);
  if (!match) throw new Error(`"${text}" is not a duration (write 250ms, 30s, 5m, 2h or 1d)`);
  const value = Number(match[1]) * UNITS[match[2] ?? 'ms'];
  if (!Number.isFinite(value)) throw new Error(`"${text}" is not a finite duration`);
  return Math.round(value);
}

/** Parses a comma-separated list of durations such as `1m,5m,30m,2h`. */
export function parseDurationList(text: string): number[] {
  const parts = text.split(',').map((part) => part.trim()).filter((part) => part.length > 0);
  return parts.map(parseDuration);
}
