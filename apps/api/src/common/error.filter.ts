import { ArgumentsHost, Catch, ExceptionFilter, HttpException, Logger } from '@nestjs/common';
import { ThrottlerException } from '@nestjs/throttler';
import type { Request, Response } from 'express';
import { AppError, ErrorCode, STATUS_BY_CODE } from '@bellhop/domain';

const CODE_BY_STATUS: Record<number, ErrorCode> = {
  400: 'bad_request',
  401: 'unauthenticated',
  403: 'forbidden',
  404: 'not_found',
  405: 'not_found',
  409: 'conflict',
  413: 'payload_too_large',
  422: 'validation_failed',
  429: 'rate_limited',
};

const MESSAGE_BY_CODE: Partial<Record<ErrorCode, string>> = {
  bad_request: 'Malformed request',
  unauthenticated: 'Authentication required',
  forbidden: 'Your role does not allow this',
  not_found: 'Not found',
  payload_too_large: 'Request body is too large',
  rate_limited: 'Too many requests',
};

export interface ErrorBody {
  statusCode: number;
  error: string;
  code: ErrorCode;
  details: unknown[];
  requestId: string;
}

/** Gives every error, whatever raised it, the contract's shape; a 500 says nothing about internals. */
@Catch()
export class ErrorFilter implements ExceptionFilter {
  private readonly logger = new Logger('ErrorFilter');

  catch(exception: unknown, host: ArgumentsHost): void {
    const ctx = host.switchToHttp();
    const req = ctx.getRequest<Request & { id?: string }>();
    const res = ctx.getResponse<Response>();
    const requestId = String(req.id ?? res.getHeader('X-Request-Id') ?? 'req_unknown');
    const body = this.toBody(exception, requestId);
    if (body.statusCode >= 500) {
      this.logger.error({ err: exception, requestId, method: req.method, url: req.url }, 'request failed');
    }
    if (res.headersSent) return;
    res.setHeader('X-Request-Id', requestId);
    if (exception instanceof AppError && exception.retryAfterSeconds) res.setHeader('Retry-After', String(exception.retryAfterSeconds));
    res.status(body.statusCode).json(body);
  }

  private toBody(exception: unknown, requestId: string): ErrorBody {
    if (exception instanceof AppError) {
      return { statusCode: exception.status, error: exception.message, code: exception.code, details: exception.details, requestId };
    }
    if (exception instanceof ThrottlerException) {
      return { statusCode: 429, error: 'Too many requests, slow down', code: 'rate_limited', details: [], requestId };
    }
    if (exception instanceof HttpException) {
      const status = exception.getStatus();
      const code: ErrorCode = status >= 500 ? 'internal' : (CODE_BY_STATUS[status] ?? 'bad_request');
      const statusCode = status >= 500 ? (status === 503 ? 503 : 500) : status;
      const response = exception.getResponse();
      let message = status >= 500 ? 'Internal error' : (MESSAGE_BY_CODE[code] ?? exception.message);
      let details: unknown[] = [];
      if (status === 503 && typeof response === 'object' && response !== null) {
        // Readiness: say which dependency failed (names only, no internals).
        const failed = Object.keys((response as { error?: object }).error ?? {});
        message = failed.length ? `Not ready: ${failed.join(', ')} did not answer` : 'Not ready';
        details = failed.map((name) => ({ dependency: name, status: 'down' }));
        return { statusCode: 503, error: message, code: 'internal', details, requestId };
      }
      if (status === 404 && exception.message.startsWith('Cannot ')) message = 'Not found';
      if (status === 400 && /JSON/i.test(exception.message)) message = 'Malformed JSON in request body';
      if (status === 415) return { statusCode: 400, error: 'Unsupported charset or content encoding: send UTF-8 JSON', code: 'bad_request', details, requestId };
      if (status === 401 || status === 403) message = MESSAGE_BY_CODE[code] ?? message;
      return { statusCode, error: message, code, details, requestId };
    }
    // body-parser errors carry a status and a type.
    const bodyError = exception as { status?: number; type?: string } | undefined;
    if (bodyError && typeof bodyError.status === 'number' && typeof bodyError.type === 'string') {
      if (bodyError.status === 415) {
        return { statusCode: 400, error: 'Unsupported charset or content encoding: send UTF-8 JSON', code: 'bad_request', details: [], requestId };
      }
      if (bodyError.status === 408) {
        return { statusCode: 408, error: 'Request body not received in time', code: 'bad_request', details: [], requestId };
      }
      if (bodyError.type === 'entity.too.large') {
        return { statusCode: 413, error: 'Request body is too large', code: 'payload_too_large', details: [], requestId };
      }
      if (bodyError.status < 500) {
        const error =
          bodyError.type === 'entity.parse.failed'
            ? 'Malformed JSON in request body'
            : bodyError.type === 'entity.too.deep'
              ? (exception as Error).message
              : 'Malformed request body';
        return { statusCode: 400, error, code: 'bad_request', details: [], requestId };
      }
    }
    return { statusCode: STATUS_BY_CODE.internal, error: 'Internal error', code: 'internal', details: [], requestId };
  }
}
