import { applyDecorators } from '@nestjs/common';
import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Transform } from 'class-transformer';
import { ArrayMaxSize, ArrayMinSize, ArrayUnique, IsBoolean, IsIn, IsObject, IsOptional, Matches, MaxLength, MinLength } from 'class-validator';
import { IsOptionalNotNull, IsRetrySchedule, IsText, IsWebhookHeaders, IsWebhookSecret, RawJson } from '../../common/validators';
import { CUSTOM_EVENT_TYPE_LIMITS, CUSTOM_EVENT_TYPE_PATTERN, MAX_URL_LENGTH, SUBSCRIPTION_NAMES, TEMPLATE_LIMITS, WEBHOOK_FORMATS, WEBHOOK_LIMITS } from '@bellhop/domain';

/** The webhook's own retry schedule, documented and checked the same way on create and update. */
const RetrySchedule = () =>
  applyDecorators(
    ApiPropertyOptional({
      type: [String],
      nullable: true,
      example: ['1m', '5m', '30m', '2h'],
      description: "Waits between this webhook's scheduled attempts (0 to 10, each 1s to 24h); null = the server's RETRY_SCHEDULE",
    }),
    IsRetrySchedule(),
  );

const WebhookName = () =>
  applyDecorators(
    ApiPropertyOptional({ maxLength: WEBHOOK_LIMITS.nameMaxLength, description: "Defaults to the URL's host" }),
    Transform(({ value }: { value: unknown }) => (typeof value === 'string' ? value.trim() : value)),
    IsOptionalNotNull(),
    IsText(),
    MinLength(1, { message: 'name must not be empty' }),
    MaxLength(WEBHOOK_LIMITS.nameMaxLength),
  );

const WebhookHeaders = () =>
  applyDecorators(
    ApiPropertyOptional({
      type: 'object',
      additionalProperties: { type: 'string' },
      example: { Authorization: 'Bearer 9f3c...' },
      description: 'Sent with every attempt; at most 20; reserved: host, content-type, content-length, user-agent, connection, transfer-encoding, x-bellwether-*, webhook-*',
    }),
    IsOptionalNotNull(),
    RawJson(),
    IsWebhookHeaders(),
  );

/** Most subscriptions one webhook may hold. */
const MAX_SUBSCRIPTIONS = 100;
const SUBSCRIPTION = /^(\*|[a-z][a-z0-9_-]*\.\*|[a-z][a-z0-9_-]*(\.[a-z0-9_-]+)+)$/;

/** The shape of each subscription; whether the project knows it is checked by the service. */
const Subscriptions = (required: boolean) =>
  applyDecorators(
    (required ? ApiProperty : ApiPropertyOptional)({
      example: ['baseline.drift_detected'],
      type: [String],
      maxItems: MAX_SUBSCRIPTIONS,
      description: `Event types (built in: ${SUBSCRIPTION_NAMES.join(', ')}; or the project's own; or an inbound source's: github.<event>, gitlab.<object_kind>, github.*, gitlab.*), "*" (every type) or "<category>.*"`,
    }),
    ...(required ? [] : [IsOptionalNotNull()]),
    ArrayMinSize(1, { message: 'events must name at least one event type' }),
    ArrayMaxSize(MAX_SUBSCRIPTIONS),
    ArrayUnique(),
    IsText({ each: true }),
    MaxLength(CUSTOM_EVENT_TYPE_LIMITS.typeMaxLength, { each: true }),
    Matches(SUBSCRIPTION, { each: true, message: 'each value in events must be an event type name, "*" or "<category>.*"' }),
  );

const Format = () =>
  applyDecorators(
    ApiPropertyOptional({ enum: WEBHOOK_FORMATS, default: 'bellwether', description: 'bellwether: the event envelope; slack/discord: a one-line summary; template: the template below, rendered' }),
    IsOptionalNotNull(),
    IsIn(WEBHOOK_FORMATS as unknown as string[], { message: `format must be one of: ${WEBHOOK_FORMATS.join(', ')}` }),
  );

const Template = () =>
  applyDecorators(
    ApiPropertyOptional({
      type: 'object',
      additionalProperties: true,
      nullable: true,
      example: { text: '{{event}} in {{project.name}}', breaking: '{{data.changes.breakingCount}}' },
      description: `With format "template": a JSON object (at most ${TEMPLATE_LIMITS.maxBytes / 1024} KiB) whose strings may hold {{path}} placeholders into the envelope`,
    }),
    IsOptional(),
    RawJson(),
    IsObject({ message: 'template must be a JSON object' }),
  );

export class CreateWebhookDto {
  @ApiProperty({ example: 'https://example.com/webhooks/bellwether', maxLength: MAX_URL_LENGTH })
  @IsText()
  @MaxLength(MAX_URL_LENGTH)
  url: string;

  @WebhookName()
  name?: string;

  @ApiPropertyOptional({ example: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', description: 'whsec_ + base64 of 24 to 64 bytes; generated when absent' })
  @IsOptionalNotNull()
  @IsWebhookSecret()
  secret?: string;

  @WebhookHeaders()
  headers?: Record<string, string>;

  @Subscriptions(true)
  events: string[];

  @Format()
  format?: string;

  @Template()
  template?: Record<string, unknown> | null;

  @ApiPropertyOptional({ default: true })
  @IsOptionalNotNull()
  @IsBoolean()
  enabled?: boolean;

  @ApiPropertyOptional({ maxLength: 500 })
  @IsOptional()
  @IsText()
  @MaxLength(500)
  description?: string | null;

  @RetrySchedule()
  retrySchedule?: string[] | null;
}

export class UpdateWebhookDto {
  @ApiPropertyOptional({ maxLength: MAX_URL_LENGTH })
  @IsOptionalNotNull()
  @IsText()
  @MaxLength(MAX_URL_LENGTH)
  url?: string;

  @WebhookName()
  name?: string;

  @WebhookHeaders()
  headers?: Record<string, string>;

  @Subscriptions(false)
  events?: string[];

  @Format()
  format?: string;

  @Template()
  template?: Record<string, unknown> | null;

  @ApiPropertyOptional()
  @IsOptionalNotNull()
  @IsBoolean()
  enabled?: boolean;

  @ApiPropertyOptional({ maxLength: 500, nullable: true })
  @IsOptional()
  @IsText()
  @MaxLength(500)
  description?: string | null;

  @RetrySchedule()
  retrySchedule?: string[] | null;
}

export class TestWebhookDto {
  @ApiPropertyOptional({ example: 'baseline.drift_detected', description: "Defaults to the first type the webhook receives; the project's own types send their schema's first example, else {}" })
  @IsOptionalNotNull()
  @IsText()
  @Matches(CUSTOM_EVENT_TYPE_PATTERN, { message: 'event must be an event type name, such as baseline.drift_detected' })
  event?: string;
}
