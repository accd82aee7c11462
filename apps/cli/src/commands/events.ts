import { Command } from 'commander';
import { ApiError } from '../api-client';
import { Context, Io } from '../context';
import { usageError } from '../exit-codes';
import { keyValues } from '../format';
import { BatchItem, chunks, parseNdjson, readFileBytes, readJsonArgument } from '../input';
import { Progress } from '../progress';

/** The contract's limit of one batch request. */
export const BATCH_SIZE = 100;

interface PublishedEvent {
  id: string;
  event: string;
  timestamp: string;
  projectId: string;
  deliveries?: number;
  replayed?: boolean;
}

export function registerEvents(program: Command, io: Io): void {
  const events = program.command('events').description('publish events');

  events
    .command('publish')
    .description('publish one event; it fans out to every webhook subscribed to its type')
    .requiredOption('--project <projectId>', 'project')
    .requiredOption('--event <type>', 'event type, e.g. baseline.drift_detected')
    .requiredOption('--data <json>', 'the payload: JSON, or @file.json')
    .option('--idempotency-key <key>', 'the same key again publishes nothing twice and answers with the first event')
    .action(async (opts: { project: string; event: string; data: string; idempotencyKey?: string }, cmd: Command) => {
      const ctx = Context.of(cmd, io);
      const data = readJsonArgument(opts.data, '--data');
      const answer = await ctx.client().request<{ event: PublishedEvent; deliveries: number }>('POST', `/projects/${encodeURIComponent(opts.project)}/events`, {
        body: { event: opts.event, data },
        headers: opts.idempotencyKey ? { 'idempotency-key': opts.idempotencyKey } : {},
      });
      const { event, deliveries } = answer.body;
      ctx.output(answer.body, () =>
        keyValues([
          ['event', event.id],
          ['type', event.event],
          ['timestamp', event.timestamp],
          ['deliveries', deliveries],
          ...(answer.status === 200 ? ([['note', 'already published with this idempotency key: nothing was sent again']] as Array<[string, string]>) : []),
        ]),
      );
    });

  events
    .command('batch')
    .description(`publish the events of an NDJSON file ({"event", "data", "idempotencyKey"?} per line) in batches of ${BATCH_SIZE}, stopping at the first refused batch`)
    .requiredOption('--project <projectId>', 'project')
    .requiredOption('--file <events.ndjson>', 'the events, one JSON object per line')
    .action(async (opts: { project: string; file: string }, cmd: Command) => {
      const ctx = Context.of(cmd, io);
      const items = parseNdjson(readFileBytes(opts.file, 'events file').toString('utf8'));
      if (items.length === 0) throw usageError(`${opts.file} holds no events`);
      const client = ctx.client();
      const accepted: PublishedEvent[] = [];
      const progress = new Progress(io.stderr, 'publishing');
      progress.update(0, items.length);
      for (const batch of chunks(items, BATCH_SIZE)) {
        try {
          const answer = await client.post<{ events: PublishedEvent[] }>(`/projects/${encodeURIComponent(opts.project)}/events/batch`, {
            events: batch.map((b) => b.item),
          });
          accepted.push(...answer.events);
          progress.update(accepted.length, items.length);
        } catch (err) {
          progress.finish('stopped');
          const first = batch[0].line;
          const last = batch[batch.length - 1].line;
          ctx.output({ accepted: accepted.length, total: items.length, events: accepted, refused: { fromLine: first, toLine: last, error: err instanceof ApiError ? err.body : { error: (err as Error).message } } }, () =>
            `Accepted ${accepted.length} of ${items.length} events; the batch of lines ${first}-${last} was refused and nothing after it was sent.`,
          );
          throw err instanceof ApiError ? withLines(err, batch) : err;
        }
      }
      progress.finish();
      const replayed = accepted.filter((e) => e.replayed).length;
      ctx.output({ accepted: accepted.length, total: items.length, events: accepted }, () =>
        `Accepted ${accepted.length} of ${items.length} events${replayed ? ` (${replayed} already published under their idempotency keys)` : ''}.`,
      );
    });
}

/** Points the API's `/events/<i>/...` detail paths at the lines of the file. */
function withLines(err: ApiError, batch: BatchItem[]): ApiError {
  const details = err.body.details.map((detail) => {
    if (!detail || typeof detail !== 'object') return detail;
    const d = detail as { path?: unknown };
    const match = typeof d.path === 'string' ? /^\/events\/(\d+)(.*)$/.exec(d.path) : null;
    const item = match ? batch[Number(match[1])] : undefined;
    return item ? { ...d, path: `line ${item.line}: ${match![2] || '/'}` } : detail;
  });
  return new ApiError(err.status, { ...err.body, details }, err.retryAfter);
}
