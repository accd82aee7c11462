import { applyDecorators } from '@nestjs/common';
import { IsString, Matches, ValidateBy, ValidateIf, isEmail } from 'class-validator';

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
