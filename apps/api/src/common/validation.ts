import { ArgumentMetadata, ValidationError, ValidationPipe } from '@nestjs/common';
import { AppError, FieldError } from '@bellhop/domain';
import { restoreRawJson } from './validators';

function flatten(errors: ValidationError[], parent = ''): FieldError[] {
  const out: FieldError[] = [];
  for (const error of errors) {
    const field = parent ? `${parent}.${error.property}` : error.property;
    for (const message of Object.values(error.constraints ?? {})) out.push({ field, message });
    if (error.children?.length) out.push(...flatten(error.children, field));
  }
  return out;
}

/**
 * Nest's pipe, with the body's free-form JSON fields kept as the body had them (see RawJson): the
 * pipe strips keys named __proto__ and constructor from the whole body, in place, before the
 * conversion, so those fields are put back from a copy taken first.
 */
class BellhopValidationPipe extends ValidationPipe {
  override async transform(value: unknown, metadata: ArgumentMetadata): Promise<unknown> {
    const isBody = metadata.type === 'body' && typeof value === 'object' && value !== null;
    const original: unknown = isBody ? structuredClone(value) : value;
    const converted: unknown = await super.transform(value, metadata);
    if (isBody) restoreRawJson(converted, original);
    return converted;
  }
}

/** One pipe for the whole API: unknown fields refused, each failing field listed in `details`. */
export function createValidationPipe(): ValidationPipe {
  return new BellhopValidationPipe({
    whitelist: true,
    forbidNonWhitelisted: true,
    transform: true,
    stopAtFirstError: false,
    exceptionFactory: (errors) => AppError.validation(flatten(errors)),
  });
}
