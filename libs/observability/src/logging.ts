import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { LoggerModule } from 'nestjs-pino';
import { BELLHOP_CONFIG, BellhopConfig } from '@bellhop/config';

/** Paths that never reach a log line: credentials, passwords and webhook secrets. */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["idempotency-key"]',
  'res.headers["set-cookie"]',
  '*.password',
  '*.secret',
  '*.token',
  '*.jwtSecret',
  '*.secretsKey',
  '*.previousSecretsKeys',
];

export function newRequestId(): string {
  return 'req_' + randomUUID().replace(/-/g, '');
}

/** Longest X-Request-Id a caller may have kept: room for a UUID, a W3C traceparent or an AWS trace id. */
export const MAX_CLIENT_REQUEST_ID = 128;

/**
 * The caller's own X-Request-Id, kept beside ours for their correlation, or null. It is never our
 * request id: a caller who chose it could reuse another request's id, or one that points into
 * someone else's logs and audit entries. Only printable ASCII of bounded length is kept, so that it
 * cannot carry control characters or bulk into a log line; anything else is dropped, not repaired.
 */
export function clientRequestIdOf(incoming: string | string[] | undefined): string | null {
  return typeof incoming === 'string' && incoming.length <= MAX_CLIENT_REQUEST_ID && /^[\x20-\x7e]+$/.test(incoming) ? incoming : null;
}

/**
 * pino-http's options for both apps. The request id of every line is the server's own (the
 * answer's X-Request-Id); the caller's X-Request-Id, when it is sane, is logged beside it as
 * clientRequestId.
 */
export function httpLogOptions(app: 'api' | 'worker', level: string) {
  return {
    level,
    name: `bellhop-${app}`,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    genReqId: (req: IncomingMessage, res: ServerResponse) => {
      const existing = (req as { id?: unknown }).id;
      if (typeof existing === 'string') return existing;
      const id = newRequestId();
      res.setHeader('X-Request-Id', id);
      return id;
    },
    customProps: (req: IncomingMessage) => ({
      requestId: (req as IncomingMessage & { id?: string }).id,
      clientRequestId: clientRequestIdOf(req.headers['x-request-id']) ?? undefined,
    }),
    serializers: {
      req: (req: { id: string; method: string; url: string }) => ({ id: req.id, method: req.method, url: req.url }),
      res: (res: { statusCode: number }) => ({ statusCode: res.statusCode }),
    },
    autoLogging: { ignore: (req: IncomingMessage) => req.url === '/health' || req.url === '/metrics' },
  };
}

/** nestjs-pino, structured JSON, one line per request with its ids (see httpLogOptions). */
export function loggerModule(app: 'api' | 'worker') {
  return LoggerModule.forRootAsync({
    inject: [BELLHOP_CONFIG],
    useFactory: (config: BellhopConfig) => ({ pinoHttp: httpLogOptions(app, config.logLevel) }),
  });
}
