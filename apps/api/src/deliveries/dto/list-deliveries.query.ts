import { ApiPropertyOptional } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import { IsIn, IsInt, IsOptional, Max, Min } from 'class-validator';
import { EVENT_TYPE_NAMES } from '@bellhop/domain';
import { PageQuery } from '../../common/pagination';

export const DELIVERY_STATUSES = ['pending', 'succeeded', 'failed', 'cancelled'] as const;

export class ListDeliveriesQuery extends PageQuery {
  @ApiPropertyOptional({ enum: DELIVERY_STATUSES })
  @IsOptional()
  @IsIn(DELIVERY_STATUSES as unknown as string[], { message: `status must be one of: ${DELIVERY_STATUSES.join(', ')}` })
  status?: (typeof DELIVERY_STATUSES)[number];

  @ApiPropertyOptional({ enum: EVENT_TYPE_NAMES })
  @IsOptional()
  @IsIn(EVENT_TYPE_NAMES as string[], { message: `event must be one of: ${EVENT_TYPE_NAMES.join(', ')}` })
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
