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

/** Why an attempt was made: the schedule, a person (manual), a replay, or the test button. */
export type AttemptTrigger = 'scheduled' | 'manual' | 'replay' | 'test';

/** Triggers outside the retry schedule: they never use up a step of it, nor restart it. */
export function isOutsideSchedule(trigger: AttemptTrigger): boolean {
  return trigger === 'manual' || trigger === 'replay';
}

/** Smallest and largest wait of a webhook's own retrySchedule, and how many waits it may hold. */
export const RETRY_SCHEDULE_LIMITS = { minMs: 1000, maxMs: 24 * 60 * 60 * 1000, maxWaits: 10 } as const;

/** What an attempt's result means for its delivery. */
export interface AttemptVerdict {
  /** A 2xx in time. */
  success: boolean;
  /** 410 Gone: the receiver wants no more; the webhook is disabled (unless this was a test). */
  gone: boolean;
  /**
   * For a scheduled attempt that failed: how long until the next scheduled one, or null when the
   * schedule is used up (the delivery then fails). Always null for every other trigger.
   */
  retryInMs: number | null;
}

export interface AttemptFacts {
  trigger: AttemptTrigger;
  /** The HTTP status, or null when no response came (network error, timeout, refused address). */
  statusCode: number | null;
  /** True when the attempt ended in an error (no response, or a response that could not be read). */
  errored: boolean;
  /** The response's Retry-After header, if any. */
  retryAfter?: string | string[];
  /** Scheduled attempts made before this one. */
  scheduledAttemptsBefore: number;
  /** The waits of the effective schedule (the webhook's own, else the server's). */
  scheduleMs: readonly number[];
  now?: number;
}

/**
 * The retry rules, as pure data: 2xx succeeds; 410 ends the delivery; otherwise a scheduled
 * attempt waits for the next step of the schedule (at least Retry-After on 429/503, capped at
 * 24 h) until the schedule is used up. Manual, replay and test attempts are outside the schedule:
 * they never lead to another attempt.
 */
export function decideAttempt(facts: AttemptFacts): AttemptVerdict {
  const code = facts.statusCode;
  if (!facts.errored && code !== null && code >= 200 && code < 300) return { success: true, gone: false, retryInMs: null };
  if (code === 410) return { success: false, gone: true, retryInMs: null };
  if (facts.trigger !== 'scheduled') return { success: false, gone: false, retryInMs: null };
  let waitMs = nextRetryDelay(facts.scheduleMs, facts.scheduledAttemptsBefore + 1);
  if (waitMs === null) return { success: false, gone: false, retryInMs: null };
  if (code === 429 || code === 503) {
    const retryAfter = parseRetryAfter(facts.retryAfter, facts.now);
    if (retryAfter !== null) waitMs = Math.max(waitMs, Math.min(retryAfter, MAX_RETRY_AFTER_MS));
  }
  return { success: false, gone: false, retryInMs: waitMs };
}

/** `["1m","5m","30m","2h"]`: each wait in the largest unit that writes it exactly. */
export function formatDurations(ms: readonly number[]): string[] {
  return ms.map(formatDuration);
}

export function formatDuration(ms: number): string {
  for (const [unit, size] of [['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

/** The metrics label of an attempt's outcome: `success`, `http_4xx`/`http_5xx`..., or the error code. */
export function attemptOutcomeLabel(statusCode: number | null, errorCode: string | null): string {
  if (errorCode) return errorCode;
  const code = statusCode ?? 0;
  return code >= 200 && code < 300 ? 'success' : `http_${Math.floor(code / 100)}xx`;
}
