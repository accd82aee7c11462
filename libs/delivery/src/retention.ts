import { performance } from 'node:perf_hooks';
import { Inject, Injectable, Logger, Optional } from '@nestjs/common';
import { Client, type QueryResultRow } from 'pg';
import { BELLHOP_CONFIG, BellhopConfig } from '@bellhop/config';
import { BackgroundLoop } from './background-loop';

/** Rollups and finished replays are kept this long whatever a project's retention (its longest possible). */
export const ROLLUP_RETENTION_DAYS = 90;

/** Only one worker purges at a time; the others find the lock taken and skip their turn. */
const LOCK_KEY = 'bellhop.retention';

/** Months of attempts partitions kept ready after the current one. */
export const ATTEMPT_MONTHS_AHEAD = 3;
/**
 * How long adding or dropping a month of attempts waits for each lock it takes: readers and writers
 * of the tables locked queue behind it meanwhile.
 */
const LOCK_TIMEOUT = '1s';

export interface RetentionOptions {
  /** Purge once when the app boots, then every RETENTION_INTERVAL. Default true. */
  autoStart?: boolean;
  /** Rows per statement. Default 500. */
  batchSize?: number;
}

export const RETENTION_OPTIONS = Symbol('RETENTION_OPTIONS');

export interface PurgeResult {
  /** False when another worker held the purge lock: this one did nothing. */
  ran: boolean;
  projects: number;
  /** Deliveries deleted; their attempts went with them (ON DELETE CASCADE). */
  deliveries: number;
  events: number;
  /** Rows of webhook_stats_hourly and webhook_errors_hourly. */
  rollups: number;
  replays: number;
  /** Monthly partitions of attempts created ahead, and dropped whole (their rows with them), by name. */
  attemptMonthsAdded: string[];
  attemptMonthsDropped: string[];
  statements: number;
  longestStatementMs: number;
  durationMs: number;
}

/**
 * Deletes the history each project no longer keeps: finished deliveries (with their attempts)
 * created before now − the project's retentionDays (else RETENTION_DAYS), then the events of that
 * age left without a delivery; and, for every project, rollup rows and finished replays older than
 * 90 days. Every statement deletes at most `batchSize` rows in its own short transaction and skips
 * rows another transaction holds, so deliveries being claimed, recorded or retried never wait on
 * it; what it skipped goes at the next run. A delivery still pending, leased or waiting for a
 * manual or replay attempt is never deleted, however old.
 *
 * It walks each project's deliveries and events in id order (ULIDs: creation order) from the
 * oldest and stops at the first row inside the window, so a run reads what it deletes plus the
 * old rows it keeps, never a project's whole history.
 */
@Injectable()
export class RetentionPurger extends BackgroundLoop<PurgeResult> {
  protected readonly logger = new Logger(RetentionPurger.name);
  private readonly batchSize: number;
  /** Purges of this process, one after another (the timer's and purgeOnce's). */
  private chain: Promise<unknown> = Promise.resolve();
  /** Bumped by stop(): a purge that sees it change stops at its next statement. */
  private generation = 0;

  constructor(
    @Inject(BELLHOP_CONFIG) private readonly config: BellhopConfig,
    @Optional() @Inject(RETENTION_OPTIONS) options?: RetentionOptions,
  ) {
    super('retention purge', options?.autoStart ?? true);
    this.batchSize = options?.batchSize ?? 500;
  }

  protected pass(): Promise<PurgeResult> {
    return this.purgeOnce();
  }

  protected delayAfter(): number {
    return this.config.retentionIntervalMs;
  }

  /** Stops the timer, cuts a purge in progress short at its next statement, and waits for it. */
  override async stop(): Promise<void> {
    this.generation++;
    await super.stop();
    await this.chain.catch(() => undefined);
  }

  /** One full purge. In this process purges run one after another: a call during the timer's purge waits for it. */
  purgeOnce(): Promise<PurgeResult> {
    const run = this.chain.catch(() => undefined).then(() => this.purge());
    this.chain = run;
    return run;
  }

  private async purge(): Promise<PurgeResult> {
    const started = performance.now();
    const generation = this.generation;
    const result: PurgeResult = {
      ran: false,
      projects: 0,
      deliveries: 0,
      events: 0,
      rollups: 0,
      replays: 0,
      attemptMonthsAdded: [],
      attemptMonthsDropped: [],
      statements: 0,
      longestStatementMs: 0,
      durationMs: 0,
    };
    // A connection of its own: a session-level advisory lock belongs to one connection, which
    // Prisma's pool does not give; it also keeps the purge off the pool the attempts use.
    const client = new Client({ connectionString: this.config.databaseUrl, application_name: 'bellhop-retention' });
    client.on('error', (err) => this.logger.warn({ msg: 'retention purge: connection error', error: err.message }));
    await client.connect();
    try {
      // Row locks in the way are skipped, not waited for; these only bound the unforeseen.
      await client.query(`SET lock_timeout = '5s'; SET statement_timeout = '60s'`);
      const lock = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS locked', [LOCK_KEY]);
      if (!lock.rows[0]?.locked) return result;
      result.ran = true;
      const sql = <R extends QueryResultRow>(text: string, params: unknown[]) => this.statement<R>(client, result, generation, text, params);
      await this.addAttemptMonths(sql, result);
      // Whole months first: the deliveries deleted next then have no attempts left to cascade to.
      await this.dropAttemptMonths(sql, result);
      await this.purgeProjects(sql, result);
      await this.purgeRollups(sql, result);
      await this.purgeReplays(sql, result);
    } catch (err) {
      if (!(err instanceof Stopped)) throw err;
    } finally {
      // Closing the session releases the advisory lock.
      await client.end().catch(() => undefined);
      result.durationMs = Math.round(performance.now() - started);
    }
    if (result.ran) {
      this.logger.log({
        msg: 'retention purge',
        projects: result.projects,
        deliveries: result.deliveries,
        events: result.events,
        rollups: result.rollups,
        replays: result.replays,
        attemptMonthsAdded: result.attemptMonthsAdded,
        attemptMonthsDropped: result.attemptMonthsDropped,
        statements: result.statements,
        longestStatementMs: result.longestStatementMs,
        durationMs: result.durationMs,
        stoppedEarly: generation !== this.generation,
      });
    }
    return result;
  }

  /**
   * The partitions of attempts for this month and the next ATTEMPT_MONTHS_AHEAD (normally all
   * there: one catalog look-up each). Adding one locks deliveries against writes for an instant
   * (see bellhop_attempts_add_month); a month whose locks are not had within LOCK_TIMEOUT, or that
   * lost a deadlock, waits for the next run.
   */
  private async addAttemptMonths(sql: Sql, result: PurgeResult): Promise<void> {
    const { rows: months } = await sql<{ month: string; missing: boolean }>(
      `SELECT to_char(m, 'YYYY-MM-DD') AS month, to_regclass(quote_ident('attempts_' || to_char(m, 'YYYY_MM'))) IS NULL AS missing
         FROM generate_series(date_trunc('month', now() AT TIME ZONE 'UTC'),
                              date_trunc('month', now() AT TIME ZONE 'UTC') + make_interval(months => $1), interval '1 month') AS m`,
      [ATTEMPT_MONTHS_AHEAD],
    );
    for (const { month } of months.filter((m) => m.missing)) {
      const added = await this.locked(sql, 'attempts month not added this run', month, async () => {
        const { rows } = await sql<{ added: boolean }>('SELECT bellhop_attempts_add_month($1::date) AS added', [month]);
        return rows[0]?.added === true;
      });
      if (added) result.attemptMonthsAdded.push(`attempts_${month.slice(0, 7).replace('-', '_')}`);
    }
  }

  /**
   * Drops each month of attempts that every project's retention has passed: no project with
   * deliveries created in that month keeps them any more, and none of them is pending or waiting
   * for a manual or replay attempt (a lease is only taken on one of those). A month that fails
   * either test stays, and its rows go one by one with their deliveries, as in an unpartitioned
   * table. A month is emptied, then dropped, each step waiting at most LOCK_TIMEOUT for its lock
   * (else the month waits for the next run); neither locks deliveries.
   *
   * The tests run before those locks, which cover attempts only: a manual retry of one of the
   * month's deliveries asked for in between still goes ahead. Such a delivery is past its
   * retention: its earlier attempts go with the month's rows a little before the delivery itself;
   * an attempt it makes after the TRUNCATE keeps the month until a later run finds it unneeded.
   */
  private async dropAttemptMonths(sql: Sql, result: PurgeResult): Promise<void> {
    const { rows: months } = await sql<{ name: string; lower_bound: string; upper_bound: string; ends: Date }>(
      `SELECT p.name, b.lower_bound, b.upper_bound, p.ends
         FROM (SELECT c.relname AS name, m.month, (m.month + interval '1 month')::timestamp AT TIME ZONE 'UTC' AS ends
                 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                CROSS JOIN LATERAL (SELECT CASE WHEN c.relname ~ '^attempts_[0-9]{4}_[0-9]{2}$'
                                                THEN to_date(substr(c.relname, 10), 'YYYY_MM') END AS month) m
                WHERE i.inhparent = 'attempts'::regclass) p
        CROSS JOIN LATERAL bellhop_attempts_month_bounds(p.month) b
        WHERE p.month IS NOT NULL AND p.ends < now() - interval '1 day'
        ORDER BY p.name`,
      [],
    );
    for (const month of months) {
      const { rows } = await sql<{ kept: boolean }>(
        `SELECT EXISTS (
                  SELECT 1 FROM projects p
                   WHERE $3 > now() - make_interval(days => LEAST(GREATEST(COALESCE(p.retention_days, $4), 1), ${ROLLUP_RETENTION_DAYS}))
                     AND EXISTS (SELECT 1 FROM deliveries d WHERE d.project_id = p.id AND d.id >= $1 AND d.id < $2))
             OR EXISTS (SELECT 1 FROM deliveries WHERE status = 'pending' AND id >= $1 AND id < $2)
             OR EXISTS (SELECT 1 FROM deliveries WHERE manual_requested_at IS NOT NULL AND id >= $1 AND id < $2) AS kept`,
        [month.lower_bound, month.upper_bound, month.ends, this.config.retentionDays],
      );
      if (rows[0]?.kept) continue;
      // First its rows: TRUNCATE locks this month alone, while its files are removed (0.14 s for a
      // million attempts). Queries that may read every month (a join on attempts) wait that long.
      const emptied = await this.locked(sql, 'month of attempts in use, not dropped this run', month.name, async () => {
        await sql(`TRUNCATE ${quoteIdent(month.name)}`, []);
        return true;
      });
      if (!emptied) continue;
      // Then the empty table, with attempts locked for an instant (the parent first, as every insert
      // takes it). An attempt recorded in between (a manual retry asked for meanwhile) keeps it.
      const dropped = await this.locked(sql, 'attempts busy, month not dropped this run', month.name, async () => {
        // What the DROP locks, and no more: not every month, whose locks (autovacuum on the current
        // one) would each be waited for while attempts is held.
        await sql(`LOCK TABLE ONLY attempts, attempts_default, ${quoteIdent(month.name)} IN ACCESS EXCLUSIVE MODE`, []);
        const { rows: left } = await sql<{ some: boolean }>(`SELECT EXISTS (SELECT 1 FROM ${quoteIdent(month.name)}) AS some`, []);
        if (left[0]?.some) {
          this.logger.warn({ msg: 'retention purge: month of attempts got an attempt meanwhile, not dropped this run', about: month.name });
          return false;
        }
        await sql(`DROP TABLE ${quoteIdent(month.name)}`, []);
        return true;
      });
      if (dropped) result.attemptMonthsDropped.push(month.name);
    }
  }

  /**
   * Runs `work` in a transaction that waits at most LOCK_TIMEOUT for each lock. A lock not had in
   * time, or a deadlock lost, rolls it back and answers false (logged): the next run tries again.
   */
  private async locked(sql: Sql, warning: string, about: string, work: () => Promise<boolean>): Promise<boolean> {
    await sql('BEGIN', []);
    try {
      await sql(`SET LOCAL lock_timeout = '${LOCK_TIMEOUT}'`, []);
      const done = await work();
      await sql('COMMIT', []);
      return done;
    } catch (err) {
      await sql('ROLLBACK', []).catch(() => undefined);
      const code = (err as { code?: string }).code;
      if (code !== '55P03' && code !== '40P01') throw err;
      this.logger.warn({ msg: `retention purge: ${warning}`, about, error: (err as Error).message });
      return false;
    }
  }

  private async purgeProjects(sql: Sql, result: PurgeResult): Promise<void> {
    let after = '';
    for (;;) {
      // The cutoff comes from the database's clock, the one created_at was written with.
      const { rows } = await sql<{ id: string; cutoff: Date }>(
        `SELECT id, now() - make_interval(days => LEAST(GREATEST(COALESCE(retention_days, $2), 1), ${ROLLUP_RETENTION_DAYS})) AS cutoff
           FROM projects WHERE id > $1 ORDER BY id LIMIT 1000`,
        [after, this.config.retentionDays],
      );
      for (const project of rows) {
        result.projects++;
        result.deliveries += await this.purgeDeliveries(sql, project.id, project.cutoff);
        // Events after deliveries: an event goes once its last delivery has gone.
        for (const test of [false, true]) result.events += await this.purgeEvents(sql, project.id, test, project.cutoff);
      }
      if (rows.length < 1000) return;
      after = rows[rows.length - 1].id;
    }
  }

  /** Finished deliveries of one project created before `cutoff`, oldest first, along (project_id, id). */
  private async purgeDeliveries(sql: Sql, projectId: string, cutoff: Date): Promise<number> {
    let deleted = 0;
    let after = '';
    for (;;) {
      const { rows } = await sql<{ id: string; old: boolean }>(
        `SELECT id, created_at < $3 AS old FROM deliveries WHERE project_id = $1 AND id > $2 ORDER BY id LIMIT $4`,
        [projectId, after, cutoff, this.batchSize],
      );
      const edge = rows.findIndex((row) => !row.old);
      const old = (edge === -1 ? rows : rows.slice(0, edge)).map((row) => row.id);
      if (old.length > 0) {
        // The conditions are checked again on the locked rows: a delivery claimed or given a manual
        // attempt since the read above stays. Rows locked by another transaction are skipped.
        const gone = await sql(
          `DELETE FROM deliveries WHERE id IN (
             SELECT id FROM deliveries
              WHERE id = ANY($1::text[]) AND created_at < $2
                AND status <> 'pending' AND (lease_until IS NULL OR lease_until < now()) AND manual_requested_at IS NULL
                FOR UPDATE SKIP LOCKED)`,
          [old, cutoff],
        );
        deleted += gone.rowCount ?? 0;
      }
      if (edge !== -1 || rows.length < this.batchSize) return deleted;
      after = rows[rows.length - 1].id;
    }
  }

  /** Events of one project created before `cutoff` that no delivery refers to any more, along (project_id, test, id). */
  private async purgeEvents(sql: Sql, projectId: string, test: boolean, cutoff: Date): Promise<number> {
    let deleted = 0;
    let after = '';
    for (;;) {
      const { rows } = await sql<{ id: string; old: boolean }>(
        `SELECT id, created_at < $4 AS old FROM events WHERE project_id = $1 AND test = $2 AND id > $3 ORDER BY id LIMIT $5`,
        [projectId, test, after, cutoff, this.batchSize],
      );
      const edge = rows.findIndex((row) => !row.old);
      const old = (edge === -1 ? rows : rows.slice(0, edge)).map((row) => row.id);
      if (old.length > 0) {
        // NOT EXISTS probes the unique index on deliveries (event_id, webhook_id).
        const gone = await sql(
          `DELETE FROM events WHERE id IN (
             SELECT e.id FROM events e
              WHERE e.id = ANY($1::text[]) AND e.created_at < $2
                AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id)
                FOR UPDATE SKIP LOCKED)`,
          [old, cutoff],
        );
        deleted += gone.rowCount ?? 0;
      }
      if (edge !== -1 || rows.length < this.batchSize) return deleted;
      after = rows[rows.length - 1].id;
    }
  }

  /**
   * Hourly rollups older than 90 days, webhook by webhook along each table's primary key (no index
   * leads with the hour). The webhooks are found in the table itself, a page at a time with one
   * index probe each, so the rows of deleted webhooks and projects go too.
   */
  private async purgeRollups(sql: Sql, result: PurgeResult): Promise<void> {
    const tables = [
      { table: 'webhook_stats_hourly', key: ['webhook_id', 'hour'] },
      { table: 'webhook_errors_hourly', key: ['webhook_id', 'hour', 'code'] },
    ];
    for (const { table, key } of tables) {
      let after = '';
      for (;;) {
        const { rows } = await sql<{ webhook_id: string }>(
          `WITH RECURSIVE hooks(webhook_id, n) AS (
             (SELECT webhook_id, 1 FROM ${table} WHERE webhook_id > $1 ORDER BY webhook_id LIMIT 1)
             UNION ALL
             SELECT (SELECT t.webhook_id FROM ${table} t WHERE t.webhook_id > h.webhook_id ORDER BY t.webhook_id LIMIT 1), h.n + 1
               FROM hooks h WHERE h.webhook_id IS NOT NULL AND h.n < $2)
           SELECT webhook_id FROM hooks WHERE webhook_id IS NOT NULL`,
          [after, this.batchSize],
        );
        if (rows.length === 0) break;
        const hooks = rows.map((row) => row.webhook_id);
        for (;;) {
          const gone = await sql(
            `DELETE FROM ${table} t USING (
               SELECT ${key.map((k) => `o.${k}`).join(', ')} FROM unnest($1::text[]) AS h(id)
                CROSS JOIN LATERAL (SELECT ${key.join(', ')} FROM ${table}
                                     WHERE webhook_id = h.id AND hour < now() - make_interval(days => $2) LIMIT $3) o
                LIMIT $3) old
             WHERE ${key.map((k) => `t.${k} = old.${k}`).join(' AND ')}`,
            [hooks, ROLLUP_RETENTION_DAYS, this.batchSize],
          );
          result.rollups += gone.rowCount ?? 0;
          if ((gone.rowCount ?? 0) < this.batchSize) break;
        }
        if (rows.length < this.batchSize) break;
        after = hooks[hooks.length - 1];
      }
    }
  }

  /** Replays finished more than 90 days ago (a handful per webhook: no index needed). */
  private async purgeReplays(sql: Sql, result: PurgeResult): Promise<void> {
    for (;;) {
      const gone = await sql(
        `DELETE FROM replays WHERE id IN (
           SELECT id FROM replays
            WHERE status <> 'running' AND COALESCE(completed_at, created_at) < now() - make_interval(days => $1)
            LIMIT $2 FOR UPDATE SKIP LOCKED)`,
        [ROLLUP_RETENTION_DAYS, this.batchSize],
      );
      result.replays += gone.rowCount ?? 0;
      if ((gone.rowCount ?? 0) < this.batchSize) return;
    }
  }

  /** Runs one statement (its own transaction), timing it; stops the purge once stop() was called. */
  private async statement<R extends QueryResultRow>(client: Client, result: PurgeResult, generation: number, text: string, params: unknown[]) {
    if (generation !== this.generation) throw new Stopped();
    const started = performance.now();
    const answer = await client.query<R>(text, params);
    const ms = performance.now() - started;
    result.statements++;
    result.longestStatementMs = Math.max(result.longestStatementMs, Math.round(ms));
    return answer;
  }
}

/** A partition's name as SQL (they are ours: attempts_YYYY_MM). */
function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

type Sql = <R extends QueryResultRow>(text: string, params: unknown[]) => Promise<{ rows: R[]; rowCount: number | null }>;

/** The purge was stopped (the app is closing): what it did stays done, the rest waits for the next run. */
class Stopped extends Error {}
