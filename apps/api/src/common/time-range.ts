import { ApiPropertyOptional } from '@nestjs/swagger';
import { IsOptional, IsString, ValidateBy, type ValidationArguments } from 'class-validator';
import { encodeTime } from 'ulid';
import { IdPrefix, type IdKind, isId } from '@bellhop/domain';
import { PageQuery } from './pagination';

/**
 * An ISO-8601 time with a date, and with a zone whenever it has a time of day: a time without a
 * zone would be read in the server's zone. A date alone is that day's UTC midnight.
 */
const ISO_TIME = /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2}))?$/;
/** Times a ULID can carry, and Postgres can store, with room to spare. */
const EARLIEST = Date.UTC(1970, 0, 1);
const LATEST = Date.UTC(9999, 11, 31);

export function parseIsoTime(value: unknown): Date | null {
  if (typeof value !== 'string' || !ISO_TIME.test(value)) return null;
  const date = new Date(value);
  const ms = date.getTime();
  // Date rolls 2026-02-30 over to March: the written day must be the parsed one (zone aside).
  if (!Number.isFinite(ms) || ms < EARLIEST || ms > LATEST) return null;
  const [y, m, d] = value.slice(0, 10).split('-').map(Number);
  const written = new Date(Date.UTC(y, m - 1, d));
  if (written.getUTCFullYear() !== y || written.getUTCMonth() !== m - 1 || written.getUTCDate() !== d) return null;
  return date;
}

function IsIsoTime() {
  return ValidateBy({
    name: 'isIsoTime',
    validator: {
      validate: (value: unknown) => parseIsoTime(value) !== null,
      defaultMessage: (args?: ValidationArguments) => `${args?.property ?? 'value'} must be an ISO-8601 time with a zone, such as 2026-01-15T10:30:00.000Z`,
    },
  });
}

/** `to` is not before `from` (equal bounds are an empty window, not a mistake). */
function NotBeforeFrom() {
  return ValidateBy({
    name: 'notBeforeFrom',
    validator: {
      validate: (value: unknown, args?: ValidationArguments) => {
        const from = parseIsoTime((args?.object as { from?: unknown } | undefined)?.from);
        const to = parseIsoTime(value);
        return from === null || to === null || to.getTime() >= from.getTime();
      },
      defaultMessage: () => 'to must not be before from',
    },
  });
}

/** An id of this kind (`wh_...`, `evt_...`), refused before any query. */
export function IsIdOf(kind: IdKind) {
  return ValidateBy({
    name: 'isIdOf',
    validator: {
      validate: (value: unknown) => isId(kind, value),
      defaultMessage: (args?: ValidationArguments) => `${args?.property ?? 'value'} must be an id of the form ${IdPrefix[kind]}_...`,
    },
  });
}

/** A page of a list bounded by creation time: `from` inclusive, `to` exclusive. */
export class TimeRangeQuery extends PageQuery {
  @ApiPropertyOptional({ format: 'date-time', description: 'Created at or after this time (ISO-8601)' })
  @IsOptional()
  @IsString()
  @IsIsoTime()
  from?: string;

  @ApiPropertyOptional({ format: 'date-time', description: 'Created before this time (ISO-8601)' })
  @IsOptional()
  @IsString()
  @IsIsoTime()
  @NotBeforeFrom()
  to?: string;
}

/**
 * Ids are made in the application and creation times by the same process but not at the same
 * instant (a publish chooses its ids, then writes; a retried batch keeps its ids), and several API
 * hosts' clocks differ a little: the id bounds are widened by this much. The exact created_at
 * condition stays beside them; the id bounds only let an index range do the narrowing.
 */
export const ID_TIME_SLACK_MS = 5 * 60_000;

const TIME_MAX = 2 ** 48 - 1;
const clamp = (ms: number) => Math.min(TIME_MAX, Math.max(0, Math.floor(ms)));

/**
 * Id bounds (`id >= gte AND id < lt`) that hold every row of this kind created in [from, to), for
 * an index range on a time-sortable id: the ULID's first 10 characters are its milliseconds.
 */
export function idBounds(kind: IdKind, range: { from: Date | null; to: Date | null }): { gte: string | null; lt: string | null } {
  const prefix = `${IdPrefix[kind]}_`;
  return {
    gte: range.from ? prefix + encodeTime(clamp(range.from.getTime() - ID_TIME_SLACK_MS), 10) : null,
    // The first id of the millisecond after the slack: every id up to its end sorts below.
    lt: range.to ? prefix + encodeTime(clamp(range.to.getTime() + ID_TIME_SLACK_MS + 1), 10) : null,
  };
}

/** The times of a validated TimeRangeQuery. */
export function timeRange(query: TimeRangeQuery): { from: Date | null; to: Date | null } {
  return { from: query.from ? parseIsoTime(query.from) : null, to: query.to ? parseIsoTime(query.to) : null };
}
