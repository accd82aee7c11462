import { Command, Option } from 'commander';
import { Context, Io, positiveInteger } from '../context';
import { clip, keyValues, ms, table } from '../format';
import { parseTime } from '../input';

export interface Delivery {
  id: string;
  webhookId: string;
  eventId: string;
  event: string;
  status: string;
  test: boolean;
  attempts: number;
  lastStatusCode: number | null;
  lastResponseTimeMs: number | null;
  createdAt: string;
  nextAttemptAt: string | null;
  completedAt: string | null;
}

interface Attempt {
  id: string;
  attempt: number;
  trigger: string;
  timestamp: string;
  request: { url: string; headers: Record<string, string>; body: string };
  response: { statusCode: number; headers: Record<string, string>; body: string; bodyTruncated: boolean } | null;
  responseTimeMs: number | null;
  error: { code: string; message: string } | null;
}

const STATUSES = ['pending', 'succeeded', 'failed', 'cancelled'];

export function deliveryPairs(d: Delivery): Array<[string, string | number | null]> {
  return [
    ['id', d.id],
    ['webhook', d.webhookId],
    ['event', `${d.event} (${d.eventId})`],
    ['status', d.status + (d.test ? ' (test)' : '')],
    ['attempts', d.attempts],
    ['last status code', d.lastStatusCode],
    ['last response time', ms(d.lastResponseTimeMs)],
    ['created', d.createdAt],
    ['next attempt', d.nextAttemptAt],
    ['completed', d.completedAt],
  ];
}

export function registerDeliveries(program: Command, io: Io): void {
  const deliveries = program.command('deliveries').description('delivery history: list, inspect, retry');

  deliveries
    .command('list')
    .description("a project's deliveries (newest first; deleted webhooks' included), or one webhook's")
    .option('--project <projectId>', "search the project's deliveries")
    .option('--webhook <webhookId>', 'only this webhook (alone: the webhook route)')
    .addOption(new Option('--status <status>', 'delivery status').choices(STATUSES))
    .option('--event <type>', 'event type')
    .option('--event-id <eventId>', "one event's deliveries (--project)")
    .addOption(new Option('--test <bool>', 'only test deliveries, or none (--project; default both)').choices(['true', 'false']))
    .option('--status-code <code>', "the last attempt's HTTP status (--project)")
    .option('--error-code <code>', "the last attempt's error code, e.g. timeout (--project)")
    .option('--from <time>', 'created at or after: ISO time or a duration ago (2h) (--project)')
    .option('--to <time>', 'created before (--project)')
    .option('--limit <n>', 'page size, at most 100', positiveInteger)
    .option('--cursor <cursor>', 'the next page, as printed after a list')
    .action(async (opts: Record<string, string | number | undefined>, cmd: Command) => {
      const ctx = Context.of(cmd, io);
      const project = opts.project as string | undefined;
      const webhook = opts.webhook as string | undefined;
      if (!project && !webhook) throw cmd.error('error: give --project (or --webhook)', { exitCode: 2, code: 'bellhop.usage' });
      const common = { status: opts.status, event: opts.event, limit: opts.limit, cursor: opts.cursor };
      const answer = project
        ? await ctx.client().get<{ deliveries: Delivery[]; nextCursor: string | null }>(`/projects/${encodeURIComponent(project)}/deliveries`, {
            ...common,
            webhookId: webhook,
            eventId: opts.eventId,
            test: opts.test,
            statusCode: opts.statusCode,
            errorCode: opts.errorCode,
            from: opts.from === undefined ? undefined : parseTime(String(opts.from), '--from'),
            to: opts.to === undefined ? undefined : parseTime(String(opts.to), '--to'),
          })
        : await ctx.client().get<{ deliveries: Delivery[]; nextCursor: string | null }>(`/webhooks/${encodeURIComponent(webhook!)}/deliveries`, common);
      ctx.output(answer, () => {
        const lines = [
          table(
            ['ID', 'EVENT', 'STATUS', 'ATTEMPTS', 'CODE', 'TIME', 'CREATED'],
            answer.deliveries.map((d) => [d.id, clip(d.event, 32), d.status + (d.test ? ' (test)' : ''), d.attempts, d.lastStatusCode, ms(d.lastResponseTimeMs), d.createdAt]),
          ),
        ];
        if (answer.nextCursor) lines.push('', `More: --cursor ${answer.nextCursor}`);
        return lines;
      });
    });

  deliveries
    .command('get')
    .description('one delivery and its most recent attempts (request and response)')
    .argument('<deliveryId>')
    .option('--bodies', 'print each attempt\'s request and response bodies')
    .action(async (id: string, opts: { bodies?: boolean }, cmd: Command) => {
      const ctx = Context.of(cmd, io);
      const answer = await ctx.client().get<{ delivery: Delivery & { attempts: Attempt[] }; attemptsNextCursor: string | null }>(`/deliveries/${encodeURIComponent(id)}`);
      const d = answer.delivery;
      ctx.output(answer, () => {
        const attempts = Array.isArray(d.attempts) ? d.attempts : [];
        const lines = [
          keyValues(deliveryPairs({ ...d, attempts: attempts.length })),
          '',
          table(
            ['#', 'ATTEMPT', 'TRIGGER', 'TIMESTAMP', 'CODE', 'TIME', 'ERROR'],
            attempts.map((a) => [a.attempt, a.id, a.trigger, a.timestamp, a.response?.statusCode, ms(a.responseTimeMs), a.error ? `${a.error.code}: ${clip(a.error.message, 50)}` : null]),
          ),
        ];
        if (opts.bodies) {
          for (const a of attempts) {
            lines.push('', `--- attempt ${a.attempt} request ${a.request.url}`, a.request.body);
            if (a.response) lines.push(`--- attempt ${a.attempt} response ${a.response.statusCode}${a.response.bodyTruncated ? ' (truncated)' : ''}`, a.response.body);
          }
        }
        return lines;
      });
    });

  deliveries
    .command('retry')
    .description('one more attempt as soon as possible, outside the schedule')
    .argument('<deliveryId>')
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      const ctx = Context.of(cmd, io);
      const answer = await ctx.client().post<{ delivery: Delivery }>(`/deliveries/${encodeURIComponent(id)}/retry`);
      ctx.output(answer, () => [`Retry queued for ${id}.`, keyValues(deliveryPairs(answer.delivery))]);
    });
}
