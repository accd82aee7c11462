import { monotonicFactory } from 'ulid';

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
} as const;

export type IdKind = keyof typeof IdPrefix;

// Monotonic within a millisecond, so ids made in one burst still sort in creation order.
const ulid = monotonicFactory();

/** A prefixed, URL-safe id that sorts by creation time: `wh_01JH3...`. */
export function newId(kind: IdKind): string {
  return `${IdPrefix[kind]}_${ulid()}`;
}

const ID_PATTERN = /^[a-z]{2,4}_[0-9A-HJKMNP-TV-Z]{26}$/;

/** True when `value` looks like an id of this kind (used to reject garbage before a query). */
export function isId(kind: IdKind, value: unknown): value is string {
  return typeof value === 'string' && value.startsWith(`${IdPrefix[kind]}_`) && ID_PATTERN.test(value);
}
