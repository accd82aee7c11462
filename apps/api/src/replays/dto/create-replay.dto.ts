import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { ArrayMaxSize, ArrayMinSize, IsArray, IsBoolean, IsIn, IsISO8601, IsOptional, IsString, Matches, MaxLength } from 'class-validator';
import { CUSTOM_EVENT_TYPE_LIMITS, CUSTOM_EVENT_TYPE_PATTERN } from '@bellhop/domain';

/** The statuses a replay may take: finished deliveries (a pending one is still on its schedule). */
export const REPLAY_STATUSES = ['failed', 'succeeded', 'cancelled'] as const;
export type ReplayStatus = (typeof REPLAY_STATUSES)[number];

/** The longest window one replay may cover. */
export const REPLAY_MAX_WINDOW_DAYS = 30;

const isoTime = { strict: true, strictSeparator: true } as const;

export class CreateReplayDto {
  @ApiProperty({ type: String, format: 'date-time', example: '2026-01-15T10:30:00.000Z', description: 'Deliveries created at or after this time' })
  @IsString()
  @IsISO8601(isoTime, { message: 'from must be an ISO-8601 time, such as 2026-01-15T10:30:00.000Z' })
  from: string;

  @ApiPropertyOptional({
    type: String,
    format: 'date-time',
    example: '2026-01-15T12:30:00.000Z',
    description: `Deliveries created before this time; default now. At most ${REPLAY_MAX_WINDOW_DAYS} days after from`,
  })
  @IsOptional()
  @IsString()
  @IsISO8601(isoTime, { message: 'to must be an ISO-8601 time, such as 2026-01-15T12:30:00.000Z' })
  to?: string;

  @ApiPropertyOptional({ type: [String], enum: REPLAY_STATUSES, default: ['failed'], description: 'The statuses of the deliveries to replay' })
  @IsOptional()
  @IsArray()
  @ArrayMinSize(1, { message: 'status must name at least one status' })
  @ArrayMaxSize(REPLAY_STATUSES.length * 2)
  @IsIn(REPLAY_STATUSES as unknown as string[], { each: true, message: `each status must be one of: ${REPLAY_STATUSES.join(', ')}` })
  status?: ReplayStatus[];

  @ApiPropertyOptional({ example: 'baseline.drift_detected', description: 'Only the deliveries of this event type' })
  @IsOptional()
  @IsString()
  @MaxLength(CUSTOM_EVENT_TYPE_LIMITS.typeMaxLength)
  @Matches(CUSTOM_EVENT_TYPE_PATTERN, { message: 'event must be an event type name, such as baseline.drift_detected' })
  event?: string;

  @ApiPropertyOptional({ default: false, description: 'Only count the deliveries that would be replayed: 200 {replay: {matched}}, nothing written' })
  @IsOptional()
  @IsBoolean()
  dryRun?: boolean;
}
