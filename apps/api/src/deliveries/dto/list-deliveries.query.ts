import { ApiPropertyOptional } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import { IsIn, IsInt, IsOptional, IsString, Matches, Max, MaxLength, Min } from 'class-validator';
import { CUSTOM_EVENT_TYPE_LIMITS, CUSTOM_EVENT_TYPE_PATTERN } from '@bellhop/domain';
import { PageQuery } from '../../common/pagination';

export const DELIVERY_STATUSES = ['pending', 'succeeded', 'failed', 'cancelled'] as const;

export class ListDeliveriesQuery extends PageQuery {
  @ApiPropertyOptional({ enum: DELIVERY_STATUSES })
  @IsOptional()
  @IsIn(DELIVERY_STATUSES as unknown as string[], { message: `status must be one of: ${DELIVERY_STATUSES.join(', ')}` })
  status?: (typeof DELIVERY_STATUSES)[number];

  /**
   * Any well-formed type name: built in, a source's (`github.push`) or one of the project's own,
   * deleted ones included, since their deliveries stay. An equality on the stored name, so a
   * name nothing was sent as just finds nothing.
   */
  @ApiPropertyOptional({ example: 'baseline.drift_detected', description: "A built-in type, a source's (github.push) or one of the project's own" })
  @IsOptional()
  @IsString()
  @MaxLength(CUSTOM_EVENT_TYPE_LIMITS.typeMaxLength)
  @Matches(CUSTOM_EVENT_TYPE_PATTERN, { message: 'event must be an event type name, such as baseline.drift_detected' })
  event?: string;
}

/** Pages of attempts carry the request body each: at most 20 a page. */
export class AttemptsQuery extends PageQuery {
  @ApiPropertyOptional({ minimum: 1, maximum: 20, default: 20 })
  @IsOptional()
  @Type(() => Number)
  @IsInt()
  @Min(1)
  @Max(20)
  declare limit?: number;
}
