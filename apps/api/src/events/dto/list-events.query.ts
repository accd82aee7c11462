import { ApiPropertyOptional } from '@nestjs/swagger';
import { IsOptional, IsString, Matches, MaxLength } from 'class-validator';
import { CUSTOM_EVENT_TYPE_LIMITS, CUSTOM_EVENT_TYPE_PATTERN } from '@bellhop/domain';
import { TimeRangeQuery } from '../../common/time-range';

/** GET /projects/{projectId}/events: newest first, by type and creation time. */
export class ListEventsQuery extends TimeRangeQuery {
  @ApiPropertyOptional({ example: 'baseline.drift_detected', description: "A built-in type or one of the project's own" })
  @IsOptional()
  @IsString()
  @MaxLength(CUSTOM_EVENT_TYPE_LIMITS.typeMaxLength)
  @Matches(CUSTOM_EVENT_TYPE_PATTERN, { message: 'event must be an event type name, such as baseline.drift_detected' })
  event?: string;
}
