/** Longest wait a receiver can ask for with Retry-After. */
export const MAX_RETRY_AFTER_MS = 24 * 60 * 60 * 1000;

/**
 * When attempt `attemptsMade + 1` is due, given the schedule of waits, or null when the attempts
 * are used up (the schedule's length + 1 attempts in all).
 */
export function nextRetryDelay(scheduleMs: readonly number[], attemptsMade: number): number | null {
  if (attemptsMade < 1) return 0;
  return attemptsMade <= scheduleMs.length ? scheduleMs[attemptsMade - 1] : null;
}

/** Parses a Retry-After header (seconds or an HTTP date) into milliseconds from `now`, capped at 24 h. */
export function parseRetryAfter(value: string | string[] | undefined, now = Date.now()): number | null {
  const raw = Array.isArray(value) ? value[0] : value;
  if (!raw) return null;
  const text = raw.trim();
  let ms: number;
  if (/^\d+$/.test(text)) ms = Number(text) * 1000;
  else {
    const at = Date.parse(text);
    if (Number.isNaN(at)) return null;
    ms = at - now;
  }
  return Math.min(Math.max(ms, 0), MAX_RETRY_AFTER_MS);
}
