import { Public } from './public';
import { Controller, Get, Global, Header, Inject, Module } from '@nestjs/common';
import { ApiExcludeController } from '@nestjs/swagger';
import { Counter, Histogram, Registry, collectDefaultMetrics, Gauge } from 'prom-client';

/** One registry per process; both apps expose it on GET /metrics. */
export const registry = new Registry();
collectDefaultMetrics({ register: registry, prefix: 'bellhop_' });

export const metrics = {
  httpRequests: new Counter({
    name: 'bellhop_http_requests_total',
    help: 'HTTP requests answered by the API',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [registry],
  }),
  httpDuration: new Histogram({
    name: 'bellhop_http_request_duration_seconds',
    help: 'API request duration',
    labelNames: ['method', 'route'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  }),
  eventsPublished: new Counter({
    name: 'bellhop_events_published_total',
    help: 'Events accepted for delivery',
    registers: [registry],
  }),
  attempts: new Counter({
    name: 'bellhop_delivery_attempts_total',
    help: 'Delivery attempts made, by outcome',
    labelNames: ['outcome'] as const,
    registers: [registry],
  }),
  attemptDuration: new Histogram({
    name: 'bellhop_delivery_attempt_duration_seconds',
    help: 'Time from request start to the end of the response',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  }),
  swept: new Counter({
    name: 'bellhop_sweeper_redispatched_total',
    help: 'Due deliveries the sweeper put back on the queue',
    registers: [registry],
  }),
  deliveryLag: new Histogram({
    name: 'bellhop_delivery_lag_seconds',
    help: 'Time from when an attempt was due to when it started',
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
    registers: [registry],
  }),
  sentBack: new Counter({
    name: 'bellhop_delivery_jobs_sent_back_total',
    help: 'Queue jobs put back in the delayed set without an attempt: at an in-flight cap, or early',
    labelNames: ['reason'] as const,
    registers: [registry],
  }),
  inFlight: new Gauge({
    name: 'bellhop_delivery_attempts_in_flight',
    help: 'Attempts being made right now by this worker',
    registers: [registry],
  }),
};

/**
 * The registry of one app rather than of the process, for gauges collected at scrape time from
 * that app's own connections (the worker's queue and backlog). Each app gets its own, so an API and
 * a worker booted in one process (tests) do not show each other's, and the API never shows them.
 */
export const APP_METRICS = Symbol('APP_METRICS');

@ApiExcludeController()
@Public()
@Controller('metrics')
export class MetricsController {
  constructor(@Inject(APP_METRICS) private readonly appRegistry: Registry) {}

  @Get()
  @Header('Content-Type', registry.contentType)
  async scrape(): Promise<string> {
    const shared = await registry.metrics();
    if (this.appRegistry.getMetricsAsArray().length === 0) return shared;
    return `${shared}\n${await this.appRegistry.metrics()}`;
  }
}

@Global()
@Module({
  controllers: [MetricsController],
  providers: [{ provide: APP_METRICS, useFactory: () => new Registry() }],
  exports: [APP_METRICS],
})
export class MetricsModule {}
