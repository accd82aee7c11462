import { applyDecorators } from '@nestjs/common';
import { Transform } from 'class-transformer';
import { IsString, Matches, MaxLength, MinLength, ValidateBy, ValidateIf, isEmail } from 'class-validator';

/** A string that Postgres can store: text columns refuse the NUL character. */
export function IsText() {
  // eslint-disable-next-line no-control-regex -- the NUL character is exactly what is refused
  return applyDecorators(IsString(), Matches(/^[^\u0000]*$/, { message: '$property must not contain NUL characters' }));
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
