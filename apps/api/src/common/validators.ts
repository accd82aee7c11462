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
const nestedDtos = new WeakMap<object, Map<string, () => object>>();

/**
 * A free-form JSON object (a payload, a schema, a template) taken exactly as the body had it. The
 * validation pipe would strip keys named __proto__ or constructor from it and the class conversion
 * would copy it whole; instead the pipe takes the object out of the body before both, checks `{}`
 * in its place, and puts the body's own object back (see detachRawJson). Only plain objects are
 * taken out: anything else stays for the field's validators to refuse.
 */
export function RawJson(): PropertyDecorator {
  return (target: object, key: string | symbol) => {
    const fields = rawJsonFields.get(target) ?? new Set<string>();
    fields.add(String(key));
    rawJsonFields.set(target, fields);
  };
}

/** A field holding DTOs (or an array of them) whose own @RawJson fields are to be taken out too. */
export function HoldsRawJson(dto: () => object): PropertyDecorator {
  return (target: object, key: string | symbol) => {
    const fields = nestedDtos.get(target) ?? new Map<string, () => object>();
    fields.set(String(key), dto);
    nestedDtos.set(target, fields);
  };
}

function lookupUp<T>(registry: WeakMap<object, T>, proto: object | null, find: (entry: T) => boolean): boolean {
  for (let p = proto; p && p !== Object.prototype; p = Object.getPrototypeOf(p) as object | null) {
    const entry = registry.get(p);
    if (entry && find(entry)) return true;
  }
  return false;
}

function nestedDtoOf(proto: object, key: string): object | undefined {
  for (let p: object | null = proto; p && p !== Object.prototype; p = Object.getPrototypeOf(p) as object | null) {
    const dto = nestedDtos.get(p)?.get(key);
    if (dto) return (dto() as { prototype: object }).prototype;
  }
  return undefined;
}

const isPlainObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value) && (Object.getPrototypeOf(value) === Object.prototype || Object.getPrototypeOf(value) === null);

export interface Detached {
  path: Array<string | number>;
  value: Record<string, unknown>;
}

/**
 * Takes the @RawJson objects out of a request body (of DTO class `metatype`), leaving `{}` in
 * their place; returns them with their paths, for restoreRawJson to put into the converted DTO.
 */
export function detachRawJson(body: unknown, metatype: unknown): Detached[] {
  const out: Detached[] = [];
  const walk = (plain: unknown, proto: object, path: Array<string | number>) => {
    if (!isPlainObject(plain)) return;
    for (const key of Object.keys(plain)) {
      const value = plain[key];
      if (lookupUp(rawJsonFields, proto, (fields) => fields.has(key))) {
        if (isPlainObject(value)) {
          out.push({ path: [...path, key], value });
          plain[key] = {};
        }
        continue;
      }
      const nested = nestedDtoOf(proto, key);
      if (!nested) continue;
      if (Array.isArray(value)) value.forEach((item, i) => walk(item, nested, [...path, key, i]));
      else walk(value, nested, [...path, key]);
    }
  };
  if (typeof metatype === 'function') walk(body, (metatype as { prototype: object }).prototype, []);
  return out;
}

/** Puts the detached objects into the converted DTO, at their paths. */
export function restoreRawJson(converted: unknown, detached: Detached[]): void {
  for (const { path, value } of detached) {
    let node = converted as Record<string | number, unknown> | undefined;
    for (const step of path.slice(0, -1)) node = node?.[step] as Record<string | number, unknown> | undefined;
    if (node && typeof node === 'object') node[path[path.length - 1]] = value;
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
