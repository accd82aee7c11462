import { readFileSync } from 'node:fs';
import { usageError } from './exit-codes';

/** Reads `@path` as that file's text (for values too long or too secret for the command line); anything else is the value itself. */
export function readArgument(value: string, what: string): string {
  if (!value.startsWith('@')) return value;
  const path = value.slice(1);
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw usageError(`Cannot read ${what} from ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** `--data @file.json` or `--data '{"json": true}'`. */
export function readJsonArgument(value: string, what: string): unknown {
  const text = readArgument(value, what);
  try {
    return JSON.parse(text);
  } catch (err) {
    throw usageError(`${what} is not valid JSON: ${(err as Error).message}`);
  }
}

export function readFileBytes(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw usageError(`Cannot read ${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

export interface BatchItem {
  /** 1-based line of the file, to point at the line the API refused. */
  line: number;
  item: { event: string; data: unknown; idempotencyKey?: string };
}

/**
 * Every event of an NDJSON file (`{"event", "data", "idempotencyKey"?}` per line, blank lines
 * skipped), all checked before anything is sent: a typo on line 900 must not leave 800 events
 * published and the rest not.
 */
export function parseNdjson(text: string): BatchItem[] {
  const items: BatchItem[] = [];
  text.split('\n').forEach((raw, index) => {
    const line = raw.trim();
    if (line === '') return;
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch (err) {
      throw usageError(`line ${index + 1}: not valid JSON: ${(err as Error).message}`);
    }
    const item = parsed as Record<string, unknown>;
    if (!item || typeof item !== 'object' || Array.isArray(item) || typeof item.event !== 'string' || !('data' in item)) {
      throw usageError(`line ${index + 1}: expected an object {"event": "...", "data": {...}}`);
    }
    if (item.idempotencyKey !== undefined && typeof item.idempotencyKey !== 'string') {
      throw usageError(`line ${index + 1}: idempotencyKey must be a string`);
    }
    items.push({ line: index + 1, item: item as BatchItem['item'] });
  });
  return items;
}

export function chunks<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `250ms`, `30s`, `5m`, `2h`, `7d` in milliseconds, or null when it is not a duration. */
export function parseDuration(value: string): number | null {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(value.trim());
  return match ? Number(match[1]) * UNITS[match[2]] : null;
}

/** An ISO time, or a duration meaning that long before `now` (`--from 2h`), as the ISO-8601 UTC string the API expects. */
export function parseTime(value: string, what: string, now: Date = new Date()): string {
  const ago = parseDuration(value);
  if (ago !== null) return new Date(now.getTime() - ago).toISOString();
  const parsed = Date.parse(value);
  if (Number.isNaN(parsed) || !/^\d{4}-\d{2}-\d{2}/.test(value)) throw usageError(`${what} must be an ISO time (2026-01-15T10:30:00Z) or a duration before now (90m, 2h, 7d): got ${value}`);
  return new Date(parsed).toISOString();
}

/** `a,b, c` → ['a', 'b', 'c']. */
export function parseList(value: string): string[] {
  return value
    .split(',')
    .map((part) => part.trim())
    .filter((part) => part !== '');
}

/** `Name: value` pairs for custom webhook headers, repeatable. */
export function collectHeader(value: string, previous: Record<string, string> = {}): Record<string, string> {
  const colon = value.indexOf(':');
  if (colon <= 0) throw usageError(`--header must be "Name: value": got ${value}`);
  return { ...previous, [value.slice(0, colon).trim()]: value.slice(colon + 1).trim() };
}
