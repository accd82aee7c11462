import { setTimeout as sleep } from 'node:timers/promises';
import { Command } from 'commander';
import { Context, Io } from '../context';
import { reportedFailure } from '../exit-codes';
import { keyValues } from '../format';
import { parseList, parseTime } from '../input';
import { Progress } from '../progress';

export interface Replay {
  id: string;
  webhookId: string;
  status: 'running' | 'completed' | 'cancelled';
  matched: number;
  queued: number;
  succeeded: number;
  failed: number;
  createdAt: string;
  completedAt: string | null;
}

/** How often a followed replay is asked for its progress: one indexed read, cheap for the API. */
const POLL_MS = 500;

export function registerReplay(program: Command, io: Io): void {
  program
    .command('replay')
    .description("recover after an outage: one more attempt for each of a webhook's matching deliveries, followed until done (owner/admin)")
    .requiredOption('--webhook <webhookId>', 'webhook')
    .requiredOption('--from <time>', 'deliveries created at or after: ISO time, or a duration ago (6h, 2d)')
    .option('--to <time>', 'created before (default: now); the window is at most 30 days')
    .option('--status <statuses>', 'delivery statuses to replay, comma-separated: failed, succeeded, cancelled (default: failed)')
    .option('--event <type>', 'only this event type')
    .option('--dry-run', 'only count the deliveries that would be replayed')
    .option('--no-follow', 'start it and return at once')
    .action(async (opts: { webhook: string; from: string; to?: string; status?: string; event?: string; dryRun?: boolean; follow: boolean }, cmd: Command) => {
      const ctx = Context.of(cmd, io);
      const client = ctx.client();
      const now = new Date();
      const body = {
        from: parseTime(opts.from, '--from', now),
        to: opts.to === undefined ? undefined : parseTime(opts.to, '--to', now),
        status: opts.status === undefined ? undefined : parseList(opts.status),
        event: opts.event,
        dryRun: opts.dryRun ? true : undefined,
      };
      const started = await client.post<{ replay: Replay }>(`/webhooks/${encodeURIComponent(opts.webhook)}/replay`, body);
      if (opts.dryRun) {
        ctx.output(started, () => `${started.replay.matched} deliveries would be replayed.`);
        return;
      }
      let replay = started.replay;
      if (opts.follow) {
        const progress = new Progress(io.stderr, `replay ${replay.id}`);
        for (;;) {
          progress.update(replay.succeeded + replay.failed, replay.matched, `${replay.succeeded} succeeded, ${replay.failed} failed`);
          if (replay.status !== 'running') break;
          await sleep(POLL_MS);
          replay = (await client.get<{ replay: Replay }>(`/replays/${encodeURIComponent(replay.id)}`)).replay;
        }
        progress.finish(`${replay.succeeded} succeeded, ${replay.failed} failed: ${replay.status}`);
      }
      ctx.output({ replay }, () =>
        keyValues([
          ['replay', replay.id],
          ['status', replay.status],
          ['matched', replay.matched],
          ['queued', replay.queued],
          ['succeeded', replay.succeeded],
          ['failed', replay.failed],
          ['completed', replay.completedAt],
        ]),
      );
      // Cancelled (by someone, or because the webhook was disabled or deleted): not every delivery got its attempt.
      if (replay.status === 'cancelled') throw reportedFailure();
    });
}
