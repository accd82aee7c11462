import { ApiProperty } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import { ArrayMaxSize, ArrayMinSize, IsArray, IsObject, IsOptional, IsString, Length, Matches, MaxLength, ValidateNested } from 'class-validator';
import { HoldsRawJson, RawJson } from '../../common/validators';
import { CUSTOM_EVENT_TYPE_LIMITS, CUSTOM_EVENT_TYPE_PATTERN, EVENT_TYPE_NAMES } from '@bellhop/domain';

export class PublishEventDto {
  @ApiProperty({ example: 'baseline.drift_detected', description: `A built-in type (${EVENT_TYPE_NAMES.join(', ')}) or one of the project's own` })
  @IsString()
  @MaxLength(CUSTOM_EVENT_TYPE_LIMITS.typeMaxLength)
  @Matches(CUSTOM_EVENT_TYPE_PATTERN, { message: 'event must be an event type name, such as baseline.drift_detected' })
  event: string;

  @ApiProperty({ type: 'object', additionalProperties: true, description: 'The event payload, sent to receivers as `data`' })
  @RawJson()
  @IsObject({ message: 'data must be a JSON object' })
  data: Record<string, unknown>;
}

/** Most events one batch publish may carry. */
export const MAX_BATCH_EVENTS = 100;

export class BatchEventDto extends PublishEventDto {
  @ApiProperty({ required: false, description: 'Like the Idempotency-Key header, for this item: seen before, it answers with the first event' })
  @IsOptional()
  @IsString()
  @Length(1, 255)
  idempotencyKey?: string;
}

export class PublishBatchDto {
  @ApiProperty({ type: [BatchEventDto], minItems: 1, maxItems: MAX_BATCH_EVENTS })
  @IsArray()
  @IsObject({ each: true, message: 'each item of events must be an object {event, data, idempotencyKey?}' })
  @ArrayMinSize(1, { message: 'events must hold at least one event' })
  @ArrayMaxSize(MAX_BATCH_EVENTS, { message: `events may hold at most ${MAX_BATCH_EVENTS} events` })
  @ValidateNested({ each: true })
  @Type(() => BatchEventDto)
  @HoldsRawJson(() => BatchEventDto)
  events: BatchEventDto[];
}
