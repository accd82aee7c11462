import { ApiPropertyOptional } from '@nestjs/swagger';
import { IsIn, IsOptional } from 'class-validator';

export const STATS_WINDOWS = ['24h', '7d', '30d'] as const;
export type StatsWindow = (typeof STATS_WINDOWS)[number];

export class StatsQuery {
  @ApiPropertyOptional({ enum: STATS_WINDOWS, default: '24h' })
  @IsOptional()
  @IsIn(STATS_WINDOWS, { message: `window must be one of ${STATS_WINDOWS.join(', ')}` })
  window?: StatsWindow;
}
