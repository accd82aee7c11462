import { ApiPropertyOptional } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import { IsInt, IsOptional, IsString, Matches, Max, Min } from 'class-validator';

export class PageQuery {
  @ApiPropertyOptional({ minimum: 1, maximum: 100, default: 50 })
  @IsOptional()
  @Type(() => Number)
  @IsInt()
  @Min(1)
  @Max(100)
  limit?: number;

  @ApiPropertyOptional({ description: 'nextCursor of the previous page' })
  @IsOptional()
  @IsString()
  @Matches(/^[a-z]{2,4}_[0-9A-Z]{26}$/, { message: 'cursor is not a valid cursor' })
  cursor?: string;
}

/** Keyset pagination over time-sortable ids, newest first: `id < cursor ORDER BY id DESC`. */
export function pageArgs(query: PageQuery): { take: number; where: { id?: { lt: string } }; orderBy: { id: 'desc' } } {
  return { take: (query.limit ?? 50) + 1, where: query.cursor ? { id: { lt: query.cursor } } : {}, orderBy: { id: 'desc' } };
}

export function page<T extends { id: string }>(rows: T[], query: PageQuery): { items: T[]; nextCursor: string | null } {
  const limit = query.limit ?? 50;
  const items = rows.slice(0, limit);
  return { items, nextCursor: rows.length > limit ? items[items.length - 1].id : null };
}
