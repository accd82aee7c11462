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
];

export function newRequestId(): string {
  return 'req_' + randomUUID().replace(/-/g, '');
}

/** A caller's X-Request-Id when it is a sane token, else a fresh one. */
export function requestIdFor(incoming: string | string[] | undefined): string {
  return typeof incoming === 'string' && /^[\w.-]{1,128}$/.test(incoming) ? incoming : newRequestId();
}

/** nestjs-pino, structured JSON, with the request id of every line taken from X-Request-Id. */
export function loggerModule(app: 'api' | 'worker') {
  return LoggerModule.forRootAsync({
    inject: [BELLHOP_CONFIG],
    useFactory: (config: BellhopConfig) => ({
    pinoHttp: {
      level: config.logLevel,
      name: `bellhop-${app}`,
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      genReqId: (req: IncomingMessage, res: ServerResponse) => {
        const existing = (req as { id?: unknown }).id;
        if (typeof existing === 'string') return existing;
        const id = requestIdFor(req.headers['x-request-id']);
        res.setHeader('X-Request-Id', id);
        return id;
      },
      customProps: (req: IncomingMessage) => ({ requestId: (req as IncomingMessage & { id?: string }).id }),
      serializers: {
        req: (req: { id: string; method: string; url: string }) => ({ id: req.id, method: req.method, url: req.url }),
        res: (res: { statusCode: number }) => ({ statusCode: res.statusCode }),
      },
      autoLogging: { ignore: (req: IncomingMessage) => req.url === '/health' || req.url === '/metrics' },
    },
    }),
  });
}
