import { ArgumentMetadata, ValidationError, ValidationPipe } from '@nestjs/common';
import { AppError, FieldError } from '@bellhop/domain';
import { detachRawJson, restoreRawJson } from './validators';

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
 * Nest's pipe, with the body's free-form JSON objects kept as the body had them (see RawJson):
 * taken out before the pipe strips keys and converts, put back after the checks passed.
 */
class BellhopValidationPipe extends ValidationPipe {
  override async transform(value: unknown, metadata: ArgumentMetadata): Promise<unknown> {
    const detached = metadata.type === 'body' ? detachRawJson(value, metadata.metatype) : [];
    const converted: unknown = await super.transform(value, metadata);
    restoreRawJson(converted, detached);
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
