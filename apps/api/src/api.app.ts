import { INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { NestExpressApplication } from '@nestjs/platform-express';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import type { NextFunction, Request, Response } from 'express';
import { Logger } from 'nestjs-pino';
import { BELLHOP_CONFIG, BellhopConfig } from '@bellhop/config';
import { metrics, newRequestId } from '@bellhop/observability';
import { AppModule } from './app.module';
import { ErrorFilter } from './common/error.filter';
import { SourceFailureLimiter } from './common/rate-limit';
import { JsonTooDeepError, MAX_JSON_DEPTH, jsonDepth } from './common/json-depth';
import { createValidationPipe } from './common/validation';
import { dashboardMiddleware } from './dashboard/dashboard';
import { ingestBody } from './sources/ingest-body';
import { INGEST_BODY_LIMIT_BYTES } from './sources/ingest.service';

export const API_VERSION = '1.0.0';

/** Builds the API with every edge concern in place; main.ts listens, tests drive it with supertest. */
export async function createApiApp(): Promise<INestApplication> {
  const app = await NestFactory.create<NestExpressApplication>(AppModule, { bufferLogs: true, bodyParser: false });
  const config = app.get<BellhopConfig>(BELLHOP_CONFIG);
  app.useLogger(app.get(Logger));
  // Who may name the client in X-Forwarded-For (TRUST_PROXY, loopback by default): every
  // per-address limit keys on the address Express resolves with it.
  app.set('trust proxy', config.trustProxy);
  app.disable('x-powered-by');
  // The request id is set before anything can fail, so even a body-parser error carries it. It is
  // always our own: a caller's X-Request-Id is only kept beside it (logs, audit entries).
  app.use((req: Request & { id?: string }, res: Response, next: NextFunction) => {
    req.id = newRequestId();
    res.setHeader('X-Request-Id', req.id);
    next();
  });
  // The dashboard page's strict CSP, nosniff and no-referrer, on every response under /dashboard.
  app.use(dashboardMiddleware);
  // Inbound sources verify the exact bytes GitHub or GitLab signed: /ingest gets them raw (any
  // content type, at most 5 MiB, not inflated), and the JSON parser below then skips the body it
  // finds already read. A body over the cap ends the connection at once (ingestBody); a source with
  // too many bodies being read at once is refused before its body is read (SourceFailureLimiter).
  app.use('/ingest', app.get(SourceFailureLimiter).gate(), ingestBody(INGEST_BODY_LIMIT_BYTES));
  app.useBodyParser('json', {
    limit: config.bodyLimitBytes,
    strict: true,
    type: ['application/json', 'application/*+json'],
    // Deeply nested bodies are refused before the validator recurses into them.
    verify: (_req: unknown, _res: unknown, buf: Buffer) => {
      if (jsonDepth(buf) > MAX_JSON_DEPTH) throw new JsonTooDeepError();
    },
  } as Parameters<NestExpressApplication['useBodyParser']>[1]);
  app.use((req: Request, res: Response, next: NextFunction) => {
    const end = metrics.httpDuration.startTimer();
    res.on('finish', () => {
      const route = (req.route?.path as string | undefined) ?? 'unmatched';
      end({ method: req.method, route });
      metrics.httpRequests.inc({ method: req.method, route, status: String(res.statusCode) });
    });
    next();
  });
  // A browser dashboard on another origin: only the origins the operator named (none by default).
  // Bearer tokens, not cookies: no credentials mode.
  if (config.corsOrigins.length > 0) {
    app.enableCors({
      origin: config.corsOrigins,
      methods: ['GET', 'POST', 'PATCH', 'DELETE'],
      allowedHeaders: ['Authorization', 'Content-Type', 'Idempotency-Key', 'X-Request-Id'],
      exposedHeaders: ['X-Request-Id', 'Retry-After'],
      maxAge: 600,
    });
  }
  app.useGlobalPipes(createValidationPipe());
  app.useGlobalFilters(new ErrorFilter());
  app.enableShutdownHooks();

  const document = SwaggerModule.createDocument(
    app,
    new DocumentBuilder()
      .setTitle('Bellhop')
      .setDescription('Multi-tenant webhook delivery: projects, webhooks, signed deliveries, retries and history.')
      .setVersion(API_VERSION)
      .addBearerAuth()
      .build(),
  );
  SwaggerModule.setup('docs', app, document, { jsonDocumentUrl: 'docs-json' });
  return app;
}
