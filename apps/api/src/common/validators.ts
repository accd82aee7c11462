import { applyDecorators } from '@nestjs/common';
import { Transform } from 'class-transformer';
import { IsString, Matches, MaxLength, MinLength, ValidateBy, ValidateIf, type ValidationOptions, isEmail } from 'class-validator';
import { RETRY_SCHEDULE_LIMITS, checkWebhookHeaders, checkWebhookSecret } from '@bellhop/domain';

/** A string that Postgres can store: text columns refuse the NUL character. */
export function IsText(options: ValidationOptions = {}) {
  // eslint-disable-next-line no-control-regex -- the NUL character is exactly what is refused
  return applyDecorators(IsString(options), Matches(/^[^\u0000]*$/, { message: '$property must not contain NUL characters', ...options }));
}

const rawJsonFields = new WeakMap<object, Set<string>>();

/**
 * A free-form JSON value (a payload, a schema, a template, headers) taken exactly as the body had
 * it: the class conversion drops keys named like Object.prototype's members (constructor,
 * valueOf, __proto__), which are ordinary keys in JSON. The validation pipe puts the body's own
 * value back after the conversion (see restoreRawJson).
 */
export function RawJson(): PropertyDecorator {
  return (target: object, key: string | symbol) => {
    const fields = rawJsonFields.get(target) ?? new Set<string>();
    fields.add(String(key));
    rawJsonFields.set(target, fields);
  };
}

function isRawJsonField(instance: object, key: string): boolean {
  for (let proto = Object.getPrototypeOf(instance); proto && proto !== Object.prototype; proto = Object.getPrototypeOf(proto)) {
    if (rawJsonFields.get(proto)?.has(key)) return true;
  }
  return false;
}

/**
 * Puts back, into a converted body, the body's own values of its @RawJson fields, in nested
 * DTOs and arrays of them too (a batch's events).
 */
export function restoreRawJson(converted: unknown, original: unknown): void {
  if (typeof converted !== 'object' || converted === null || typeof original !== 'object' || original === null) return;
  if (Array.isArray(converted)) {
    if (Array.isArray(original)) converted.forEach((item, i) => restoreRawJson(item, original[i]));
    return;
  }
  // Only DTO instances are walked: plain values inside them are the caller's data.
  if (Object.getPrototypeOf(converted) === Object.prototype || Object.getPrototypeOf(converted) === null) return;
  const target = converted as Record<string, unknown>;
  const source = original as Record<string, unknown>;
  for (const key of Object.keys(target)) {
    if (isRawJsonField(target, key)) {
      if (Object.prototype.hasOwnProperty.call(source, key)) target[key] = source[key];
    } else {
      restoreRawJson(target[key], source[key]);
    }
  }
}

/** Optional, but not null: leaving a field out keeps it, null is refused (its column cannot be empty). */
export function IsOptionalNotNull() {
  return ValidateIf((_object: object, value: unknown) => value !== undefined);
}

/** An email address; malformed Unicode (a lone surrogate) is refused rather than crashing the check. */
export function IsEmailAddress() {
  return ValidateBy({
    name: 'isEmailAddress',
    validator: {
      validate: (value: unknown) => typeof value === 'string' && value.isWellFormed() && isEmail(value),
      defaultMessage: () => 'email must be an email address',
    },
  });
}

/** A display name: trimmed, storable text of 1 to 200 characters. */
export function IsName() {
  return applyDecorators(
    Transform(({ value }: { value: unknown }) => (typeof value === 'string' ? value.trim() : value)),
    IsText(),
    MinLength(1, { message: '$property must not be empty' }),
    MaxLength(200),
  );
}

const DURATION = /^(\d{1,9})(ms|s|m|h)$/;
const DURATION_UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** `["30s","5m","2h"]` → milliseconds; the strings are checked by IsRetrySchedule first. */
export function parseRetrySchedule(waits: readonly string[]): number[] {
  return waits.map((wait) => {
    const [, value, unit] = DURATION.exec(wait)!;
    return Number(value) * DURATION_UNIT_MS[unit];
  });
}

/** A webhook's own retrySchedule: null, or 0 to 10 waits written `30s`, `5m`, `2h`, each from 1 s to 24 h. */
export function IsRetrySchedule() {
  const { minMs, maxMs, maxWaits } = RETRY_SCHEDULE_LIMITS;
  return applyDecorators(
    ValidateIf((_object: object, value: unknown) => value !== undefined && value !== null),
    ValidateBy({
      name: 'isRetrySchedule',
      validator: {
        validate: (value: unknown) =>
          Array.isArray(value) &&
          value.length <= maxWaits &&
          value.every((wait) => typeof wait === 'string' && DURATION.test(wait)) &&
          parseRetrySchedule(value as string[]).every((ms) => ms >= minMs && ms <= maxMs),
        defaultMessage: () => `retrySchedule must be null or a list of at most ${maxWaits} durations such as "30s", "5m" or "2h", each from 1s to 24h`,
      },
    }),
  );
}

/** A rule of libs/domain that names what is wrong (or null), as a class-validator decorator. */
function FromDomainRule(name: string, problem: (value: unknown) => string | null) {
  let last: string | null = null;
  return ValidateBy({
    name,
    validator: {
      validate: (value: unknown) => (last = problem(value)) === null,
      defaultMessage: () => last ?? `${name} is not valid`,
    },
  });
}

/** A webhook's custom request headers (see checkWebhookHeaders). */
export function IsWebhookHeaders() {
  return FromDomainRule('isWebhookHeaders', checkWebhookHeaders);
}

/** A caller-chosen webhook secret (see checkWebhookSecret). */
export function IsWebhookSecret() {
  return FromDomainRule('isWebhookSecret', checkWebhookSecret);
}
