import { ApiPropertyOptional } from '@nestjs/swagger';
import { IsIn, IsOptional } from 'class-validator';
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
