/** Error codes of the HTTP contract. */
export type ErrorCode =
  | 'bad_request'
  | 'unauthenticated'
  | 'forbidden'
  | 'plan_limit'
  | 'not_found'
  | 'conflict'
  | 'webhook_disabled'
  | 'payload_too_large'
  | 'validation_failed'
  | 'rate_limited'
  | 'internal';

export const STATUS_BY_CODE: Record<ErrorCode, number> = {
  bad_request: 400,
  unauthenticated: 401,
  forbidden: 403,
  plan_limit: 403,
  not_found: 404,
  conflict: 409,
  webhook_disabled: 409,
  payload_too_large: 413,
  validation_failed: 422,
  rate_limited: 429,
  internal: 500,
};

export interface FieldError {
  field: string;
  message: string;
}

/** A failure the client should see as the contract's error shape, with its code. */
export class AppError extends Error {
  readonly status: number;
  /** For a 429: whole seconds the client should wait before trying again, sent as Retry-After. */
  retryAfterSeconds?: number;
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details: unknown[] = [],
  ) {
    super(message);
    this.status = STATUS_BY_CODE[code];
  }

  static notFound(what = 'Resource'): AppError {
    return new AppError('not_found', `${what} not found`);
  }

  static forbidden(message = 'Your role does not allow this'): AppError {
    return new AppError('forbidden', message);
  }

  static validation(details: FieldError[], message = 'Validation failed'): AppError {
    return new AppError('validation_failed', message, details);
  }

  /** A 429 `rate_limited` with Retry-After (rounded up to whole seconds, at least 1). */
  static rateLimited(retryAfterMs: number, message = 'Too many requests, slow down'): AppError {
    const err = new AppError('rate_limited', message);
    err.retryAfterSeconds = Math.max(1, Math.ceil(retryAfterMs / 1000));
    return err;
  }
}
