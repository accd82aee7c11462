import { applyDecorators } from '@nestjs/common';
import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Transform } from 'class-transformer';
import { ArrayMaxSize, ArrayMinSize, ArrayUnique, IsBoolean, IsIn, IsOptional, MaxLength, MinLength } from 'class-validator';
import { IsOptionalNotNull, IsRetrySchedule, IsText, IsWebhookHeaders, IsWebhookSecret } from '../../common/validators';
import { EVENT_TYPE_NAMES, MAX_URL_LENGTH, SUBSCRIPTION_NAMES, WEBHOOK_LIMITS } from '@bellhop/domain';

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
    IsWebhookHeaders(),
  );

const knownEvent = { each: true, message: `each value in events must be one of: ${SUBSCRIPTION_NAMES.join(', ')}` };

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

  @ApiProperty({ example: ['baseline.drift_detected'], enum: SUBSCRIPTION_NAMES, isArray: true, description: 'Event types, or "*" (every type), or "<category>.*"' })
  @ArrayMinSize(1, { message: 'events must name at least one event type' })
  @ArrayMaxSize(SUBSCRIPTION_NAMES.length)
  @ArrayUnique()
  @IsIn(SUBSCRIPTION_NAMES as string[], knownEvent)
  events: string[];

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

  @ApiPropertyOptional({ enum: SUBSCRIPTION_NAMES, isArray: true })
  @IsOptionalNotNull()
  @ArrayMinSize(1, { message: 'events must name at least one event type' })
  @ArrayMaxSize(SUBSCRIPTION_NAMES.length)
  @ArrayUnique()
  @IsIn(SUBSCRIPTION_NAMES as string[], knownEvent)
  events?: string[];

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
  @ApiPropertyOptional({ enum: EVENT_TYPE_NAMES, description: "Defaults to the webhook's first event type" })
  @IsOptionalNotNull()
  @IsIn(EVENT_TYPE_NAMES as string[], { message: `event must be one of: ${EVENT_TYPE_NAMES.join(', ')}` })
  event?: string;
}
