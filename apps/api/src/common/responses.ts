import { ApiProperty, ApiPropertyOptional, type ApiPropertyOptions } from '@nestjs/swagger';
import { WEBHOOK_FORMATS } from '@bellhop/domain';

/*
 * Response shapes of the contract for OpenAPI, so that a client generator gets typed answers. The
 * answers themselves are built by `present`; these classes only describe them.
 */

const dateTime = { type: String, format: 'date-time' } as const;
const nullableDateTime = { ...dateTime, nullable: true } as const;

export class WebhookHealthResponse {
  @ApiProperty({ enum: ['healthy', 'failing', 'disabled'] })
  status: string;
  @ApiProperty({ ...nullableDateTime, description: 'Start of the current run of failures' })
  failingSince: string | null;
  @ApiProperty(nullableDateTime)
  lastSuccessAt: string | null;
  @ApiProperty(nullableDateTime)
  lastFailureAt: string | null;
  @ApiProperty(nullableDateTime)
  lastDeliveryAt: string | null;
  @ApiProperty({ ...nullableDateTime, description: 'When a failing webhook will be disabled if nothing succeeds before; null otherwise' })
  autoDisableAt: string | null;
}

export class CreatedByResponse {
  @ApiProperty({ enum: ['user', 'api_token'] })
  type: string;
  @ApiProperty()
  id: string;
}

export class WebhookResponse {
  @ApiProperty({ example: 'wh_01JH3Y8ZK6Q2WQ4M7N8P9R0S1T' })
  id: string;
  @ApiProperty()
  projectId: string;
  @ApiProperty()
  name: string;
  @ApiProperty()
  url: string;
  @ApiProperty({ type: [String], example: ['baseline.drift_detected'] })
  events: string[];
  @ApiProperty()
  enabled: boolean;
  @ApiProperty({ type: String, nullable: true })
  description: string | null;
  @ApiProperty({ type: String, nullable: true, enum: ['gone', 'failing', null] })
  disabledReason: string | null;
  @ApiProperty({ type: 'object', additionalProperties: { type: 'string' } })
  headers: Record<string, string>;
  @ApiProperty({ type: [String], example: ['1m', '5m', '30m', '2h'], description: 'The effective schedule' })
  retrySchedule: string[];
  @ApiProperty({ enum: WEBHOOK_FORMATS })
  format: string;
  @ApiProperty({ type: 'object', additionalProperties: true, nullable: true })
  template: Record<string, unknown> | null;
  @ApiProperty({ type: CreatedByResponse, nullable: true })
  createdBy: CreatedByResponse | null;
  @ApiProperty(dateTime)
  createdAt: string;
  @ApiProperty(dateTime)
  updatedAt: string;
  @ApiProperty({ type: WebhookHealthResponse })
  health: WebhookHealthResponse;
}

export class WebhookEnvelope {
  @ApiProperty({ type: WebhookResponse })
  webhook: WebhookResponse;
}

export class WebhookWithSecret extends WebhookEnvelope {
  @ApiProperty({ example: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw' })
  secret: string;
}

export class WebhookList {
  @ApiProperty({ type: [WebhookResponse] })
  webhooks: WebhookResponse[];
  @ApiProperty({ type: String, nullable: true })
  nextCursor: string | null;
}

export class SecretResponse {
  @ApiProperty({ example: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw' })
  secret: string;
}

export class RotatedSecretResponse extends SecretResponse {
  @ApiProperty(dateTime)
  previousSecretExpiresAt: string;
}

export class DeliveryResponse {
  @ApiProperty({ example: 'dlv_01JH3Y8ZK6Q2WQ4M7N8P9R0S1T' })
  id: string;
  @ApiProperty()
  webhookId: string;
  @ApiProperty()
  eventId: string;
  @ApiProperty({ example: 'baseline.drift_detected' })
  event: string;
  @ApiProperty({ enum: ['pending', 'succeeded', 'failed', 'cancelled'] })
  status: string;
  @ApiProperty()
  test: boolean;
  @ApiProperty({ description: 'Attempts made' })
  attempts: number;
  @ApiProperty({ type: Number, nullable: true })
  lastStatusCode: number | null;
  @ApiProperty({ type: Number, nullable: true })
  lastResponseTimeMs: number | null;
  @ApiProperty(dateTime)
  createdAt: string;
  @ApiProperty(nullableDateTime)
  nextAttemptAt: string | null;
  @ApiProperty(nullableDateTime)
  completedAt: string | null;
}

export class DeliveryEnvelope {
  @ApiProperty({ type: DeliveryResponse })
  delivery: DeliveryResponse;
}

export class ReplayResponse {
  @ApiProperty({ example: 'rpl_01JH3Y8ZK6Q2WQ4M7N8P9R0S1T' })
  id: string;
  @ApiProperty()
  webhookId: string;
  @ApiProperty({ enum: ['running', 'completed', 'cancelled'] })
  status: string;
  @ApiProperty({ description: 'Deliveries that matched when the replay was created' })
  matched: number;
  @ApiProperty({ description: 'Replay attempts requested so far (a delivery with a manual attempt already waiting is skipped)' })
  queued: number;
  @ApiProperty({ description: 'Replay attempts that succeeded' })
  succeeded: number;
  @ApiProperty({ description: 'Replay attempts that failed' })
  failed: number;
  @ApiProperty(dateTime)
  createdAt: string;
  @ApiProperty(nullableDateTime)
  completedAt: string | null;
}

export class ReplayEnvelope {
  @ApiProperty({ type: ReplayResponse })
  replay: ReplayResponse;
}

export class ReplayDryRun {
  @ApiProperty({ description: 'Deliveries that would be replayed' })
  matched: number;
}

export class ReplayDryRunEnvelope {
  @ApiProperty({ type: ReplayDryRun })
  replay: ReplayDryRun;
}

export class DeliveryList {
  @ApiProperty({ type: [DeliveryResponse], description: 'Newest first; no bodies' })
  deliveries: DeliveryResponse[];
  @ApiProperty({ type: String, nullable: true })
  nextCursor: string | null;
}

export class EventTypeResponse {
  @ApiProperty({ example: 'baseline.drift_detected' })
  type: string;
  @ApiProperty({ example: 'baseline' })
  category: string;
  @ApiProperty({ type: String, nullable: true })
  description: string | null;
  @ApiProperty({ type: 'object', additionalProperties: true, nullable: true, description: 'JSON Schema (draft 2020-12) of `data`' })
  schema: Record<string, unknown> | null;
  @ApiProperty({ enum: ['builtin', 'custom'] })
  source: string;
  @ApiPropertyOptional({ type: 'object', additionalProperties: true, description: 'Built-in types: the documented example `data`' })
  example?: Record<string, unknown>;
  @ApiPropertyOptional({ ...dateTime, description: "The project's own types" })
  createdAt?: string;
  @ApiPropertyOptional({ ...dateTime, description: "The project's own types" })
  updatedAt?: string;
}

export class EventTypeEnvelope {
  @ApiProperty({ type: EventTypeResponse })
  eventType: EventTypeResponse;
}

export class EventTypeList {
  @ApiProperty({ type: [EventTypeResponse] })
  eventTypes: EventTypeResponse[];
}

export class EventResponse {
  @ApiProperty({ example: 'evt_01JH3Y8ZK6Q2WQ4M7N8P9R0S1T' })
  id: string;
  @ApiProperty({ example: 'baseline.drift_detected' })
  event: string;
  @ApiProperty(dateTime)
  timestamp: string;
  @ApiProperty()
  projectId: string;
}

export class PublishedEvent {
  @ApiProperty({ type: EventResponse })
  event: EventResponse;
  @ApiProperty({ description: 'Webhooks it fans out to' })
  deliveries: number;
}

export class BatchPublishedEvent extends EventResponse {
  @ApiProperty({ description: 'Webhooks it fans out to' })
  deliveries: number;
  @ApiProperty({ description: 'Its idempotencyKey was seen before: this is the first event' })
  replayed: boolean;
}

export class BatchPublished {
  @ApiProperty({ type: [BatchPublishedEvent], description: 'In the order of the request' })
  events: BatchPublishedEvent[];
}

export class EventList {
  @ApiProperty({ type: [EventResponse] })
  events: EventResponse[];
  @ApiProperty({ type: String, nullable: true })
  nextCursor: string | null;
}

export class EventDetail extends EventResponse {
  @ApiProperty({ type: 'object', additionalProperties: true, description: 'The envelope: {event, timestamp, project, data}' })
  payload: Record<string, unknown>;
  @ApiProperty({ type: [DeliveryResponse] })
  deliveries: DeliveryResponse[];
}

export class EventDetailEnvelope {
  @ApiProperty({ type: EventDetail })
  event: EventDetail;
}

export class StatsDeliveries {
  @ApiProperty({ description: 'Deliveries created in the window (test deliveries left out)' })
  total: number;
  @ApiProperty()
  succeeded: number;
  @ApiProperty()
  failed: number;
  @ApiProperty()
  pending: number;
  @ApiProperty()
  cancelled: number;
}

export class StatsAttempts {
  @ApiProperty({ description: 'Attempts started in the window' })
  total: number;
  @ApiProperty()
  succeeded: number;
  @ApiProperty()
  failed: number;
}

export interface StatsLatency {
  p50: number;
  p95: number;
  p99: number;
}

/** Inline rather than a reference: OpenAPI 3.0 cannot make a referenced schema nullable. */
const latencySchema = (description: string): ApiPropertyOptions => ({
  type: 'object',
  nullable: true,
  description: `${description}; milliseconds, each within about 5% (read from a histogram)`,
  properties: { p50: { type: 'number' }, p95: { type: 'number' }, p99: { type: 'number' } },
  required: ['p50', 'p95', 'p99'],
});

export class StatsError {
  @ApiProperty({ example: 'http_500', description: "The attempt's error code, or http_<status> for an answer that was not 2xx" })
  code: string;
  @ApiProperty()
  count: number;
}

export class StatsBucket {
  @ApiProperty(dateTime)
  from: string;
  @ApiProperty(dateTime)
  to: string;
  @ApiProperty({ description: 'Deliveries created in the bucket that succeeded' })
  succeeded: number;
  @ApiProperty({ description: 'Deliveries created in the bucket that failed' })
  failed: number;
  @ApiProperty({ description: 'Attempts started in the bucket' })
  attempts: number;
  @ApiProperty({ type: Number, nullable: true })
  p95Ms: number | null;
}

/** What both stats answers hold for their window. */
class StatsWindowFields {
  @ApiProperty({ enum: ['24h', '7d', '30d'] })
  window: string;
  @ApiProperty(dateTime)
  from: string;
  @ApiProperty(dateTime)
  to: string;
  @ApiProperty({ type: StatsDeliveries })
  deliveries: StatsDeliveries;
  @ApiProperty({ type: StatsAttempts })
  attempts: StatsAttempts;
  @ApiProperty({ type: Number, nullable: true, description: 'succeeded / (succeeded + failed) deliveries; null when none' })
  successRate: number | null;
  @ApiProperty(latencySchema('Attempts that got a response; null when none'))
  latencyMs: StatsLatency | null;
}

export class WebhookStats extends StatsWindowFields {
  @ApiProperty()
  webhookId: string;
  @ApiProperty({ type: [StatsError], description: 'Most first' })
  errors: StatsError[];
  @ApiProperty({ type: [StatsBucket], description: '24 hourly buckets (24h), 28 of six hours (7d) or 30 daily (30d)' })
  series: StatsBucket[];
}

export class WebhookStatsResponse {
  @ApiProperty({ type: WebhookStats })
  stats: WebhookStats;
}

export class ProjectWebhookStats {
  @ApiProperty()
  webhookId: string;
  @ApiProperty()
  name: string;
  @ApiProperty()
  url: string;
  @ApiProperty()
  enabled: boolean;
  @ApiProperty({ type: WebhookHealthResponse })
  health: WebhookHealthResponse;
  @ApiProperty({ type: StatsDeliveries })
  deliveries: StatsDeliveries;
  @ApiProperty({ type: Number, nullable: true })
  successRate: number | null;
  @ApiProperty(latencySchema('Attempts that got a response; null when none'))
  latencyMs: StatsLatency | null;
}

export class ProjectStats extends StatsWindowFields {
  @ApiProperty()
  projectId: string;
  @ApiProperty({ type: [ProjectWebhookStats], description: "The project's webhooks (deleted ones count in the totals only)" })
  webhooks: ProjectWebhookStats[];
}

export class ProjectStatsResponse {
  @ApiProperty({ type: ProjectStats })
  stats: ProjectStats;
}

export class AuditEntryResponse {
  @ApiProperty({ example: 'aud_01JH3Y8ZK6Q2WQ4M7N8P9R0S1T' })
  id: string;
  @ApiProperty({ example: 'webhook.secret_revealed' })
  action: string;
  @ApiProperty({ type: CreatedByResponse })
  actor: CreatedByResponse;
  @ApiProperty({ type: 'object', properties: { type: { type: 'string', example: 'webhook' }, id: { type: 'string' } } })
  target: { type: string; id: string };
  @ApiProperty(dateTime)
  createdAt: string;
  @ApiProperty({ type: String, nullable: true, example: 'req_3f2c9a7e5b1d4c6f8a0e2b4d6f8a0c2e', description: "The server's id of the request (its X-Request-Id answer header)" })
  requestId: string | null;
  @ApiProperty({
    type: String,
    nullable: true,
    maxLength: 128,
    description: 'The X-Request-Id the caller sent, kept for its own correlation (printable ASCII, at most 128 characters; anything else is dropped); null when none',
  })
  clientRequestId: string | null;
}

export class AuditLog {
  @ApiProperty({ type: [AuditEntryResponse] })
  entries: AuditEntryResponse[];
  @ApiProperty({ type: String, nullable: true })
  nextCursor: string | null;
}

export class SourceResponse {
  @ApiProperty({ example: 'src_01JH3Y8ZK6Q2WQ4M7N8P9R0S1T' })
  id: string;
  @ApiProperty()
  projectId: string;
  @ApiProperty({ example: 'acme/api on GitHub' })
  name: string;
  @ApiProperty({ enum: ['github', 'gitlab'] })
  type: string;
  @ApiProperty({ example: 'https://bellhop.example.com/ingest/src_01JH3Y8ZK6Q2WQ4M7N8P9R0S1T', description: "<PUBLIC_URL>/ingest/<id>: paste it into GitHub's or GitLab's webhook settings" })
  url: string;
  @ApiProperty(dateTime)
  createdAt: string;
}

export class SourceWithSecret {
  @ApiProperty({ type: SourceResponse })
  source: SourceResponse;
  @ApiProperty({ example: '4f9c1e0b7a2d8e6f3c5b9a1d7e2f4c8b0a6d3e9f1c7b5a2e8d4f0c6b3a9e1d7f', description: "GitHub's Secret or GitLab's Secret token; shown only here" })
  secret: string;
}

export class SourceList {
  @ApiProperty({ type: [SourceResponse] })
  sources: SourceResponse[];
  @ApiProperty({ type: String, nullable: true })
  nextCursor: string | null;
}

export class IngestAccepted {
  @ApiProperty({ example: 'evt_01JH3Y8ZK6Q2WQ4M7N8P9R0S1T', description: 'The event published into the project; a redelivery answers with the same one' })
  eventId: string;
}
