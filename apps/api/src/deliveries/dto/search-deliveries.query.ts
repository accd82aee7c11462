import { ApiPropertyOptional } from '@nestjs/swagger';
import { Transform } from 'class-transformer';
import { IsIn, IsInt, IsOptional, IsString, Matches, Max, MaxLength, Min } from 'class-validator';
import { CUSTOM_EVENT_TYPE_LIMITS, CUSTOM_EVENT_TYPE_PATTERN } from '@bellhop/domain';
import { IsIdOf, TimeRangeQuery } from '../../common/time-range';
import { DELIVERY_STATUSES } from './list-deliveries.query';

/** GET /projects/{projectId}/deliveries: the project's deliveries, deleted webhooks' included. */
export class SearchDeliveriesQuery extends TimeRangeQuery {
  @ApiPropertyOptional({ example: 'wh_01JH3Y8ZK6Q2WQ4M7N8P9R0S1T' })
  @IsOptional()
  @IsIdOf('webhook')
  webhookId?: string;

  @ApiPropertyOptional({ enum: DELIVERY_STATUSES })
  @IsOptional()
  @IsIn(DELIVERY_STATUSES as unknown as string[], { message: `status must be one of: ${DELIVERY_STATUSES.join(', ')}` })
  status?: (typeof DELIVERY_STATUSES)[number];

  @ApiPropertyOptional({ example: 'baseline.drift_detected', description: "A built-in type or one of the project's own" })
  @IsOptional()
  @IsString()
  @MaxLength(CUSTOM_EVENT_TYPE_LIMITS.typeMaxLength)
  @Matches(CUSTOM_EVENT_TYPE_PATTERN, { message: 'event must be an event type name, such as baseline.drift_detected' })
  event?: string;

  @ApiPropertyOptional({ example: 'evt_01JH3Y8ZK6Q2WQ4M7N8P9R0S1T' })
  @IsOptional()
  @IsIdOf('event')
  eventId?: string;

  @ApiPropertyOptional({ enum: ['true', 'false'], description: 'Only test deliveries, or none of them (default: both)' })
  @IsOptional()
  @IsIn(['true', 'false'], { message: 'test must be true or false' })
  test?: 'true' | 'false';

  @ApiPropertyOptional({ type: 'integer', minimum: 100, maximum: 599, description: "The last attempt's HTTP status" })
  @IsOptional()
  // Three digits only: Number() would also take 1e2, 0x64 or an empty string.
  @Transform(({ value }: { value: unknown }) => (typeof value === 'string' && /^\d{3}$/.test(value) ? Number(value) : value))
  @IsInt({ message: 'statusCode must be an HTTP status code (100 to 599)' })
  @Min(100, { message: 'statusCode must be an HTTP status code (100 to 599)' })
  @Max(599, { message: 'statusCode must be an HTTP status code (100 to 599)' })
  statusCode?: number;

  @ApiPropertyOptional({ example: 'connection_refused', description: "The last attempt's error code (timeout, connection_refused, dns_failure, ...)" })
  @IsOptional()
  @IsString()
  @Matches(/^[a-z][a-z0-9_]{0,63}$/, { message: 'errorCode must be an error code, such as timeout or connection_refused' })
  errorCode?: string;
}
