import { randomFillSync } from 'node:crypto';
import { monotonicFactory, ulid as ulidAt } from 'ulid';

export const IdPrefix = {
  user: 'usr',
  organization: 'org',
  project: 'proj',
  webhook: 'wh',
  event: 'evt',
  delivery: 'dlv',
  attempt: 'att',
  apiToken: 'tok',
  session: 'ses',
  audit: 'aud',
  request: 'req',
  replay: 'rpl',
  source: 'src',
} as const;

export type IdKind = keyof typeof IdPrefix;

/**
 * Cryptographic random bytes, drawn from a pool filled 4 KiB at a time: ulid asks for one byte
 * per character, and a system call per byte showed up in profiles of the publish path.
 */
const pool = Buffer.alloc(4096);
let poolOffset = pool.length;
function randomUnit(): number {
  if (poolOffset >= pool.length) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  return pool[poolOffset++] / 256;
}

// Monotonic within a millisecond, so ids made in one burst still sort in creation order.
const ulid = monotonicFactory(randomUnit);

/** A prefixed, URL-safe id that sorts by creation time: `wh_01JH3...`. */
export function newId(kind: IdKind): string {
  return `${IdPrefix[kind]}_${ulid()}`;
}

/** An id whose time part is `at` rather than now (a row dated when its cause happened). */
export function newIdAt(kind: IdKind, at: Date): string {
  return `${IdPrefix[kind]}_${ulidAt(at.getTime(), randomUnit)}`;
}

const ID_PATTERN = /^[a-z]{2,4}_[0-9A-HJKMNP-TV-Z]{26}$/;

/** True when `value` looks like an id of this kind (used to reject garbage before a query). */
export function isId(kind: IdKind, value: unknown): value is string {
  return typeof value === 'string' && value.startsWith(`${IdPrefix[kind]}_`) && ID_PATTERN.test(value);
}
