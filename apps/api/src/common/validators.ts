import { applyDecorators } from '@nestjs/common';
import { Transform } from 'class-transformer';
import { IsString, Matches, MaxLength, MinLength, ValidateBy, ValidateIf, type ValidationOptions, isEmail } from 'class-validator';
import { RETRY_SCHEDULE_LIMITS, checkWebhookHeaders, checkWebhookSecret } from '@bellhop/domain';

/** A string that Postgres can store: text columns refuse the NUL character. */
export function IsText(options: ValidationOptions = {}) {
  // eslint-disable-next-line no-control-regex -- the NUL character is exactly what is refused
  return applyDecorators(IsString(options), Matches(/^[^\u0000]*$/, { message: '$property must not contain NUL characters', ...options }));
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
