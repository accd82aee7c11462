import { Command, Option } from 'commander';
import { Context, Io } from '../context';
import { clip, keyValues, ms, percent, sparkline, table } from '../format';

interface Counts {
  total: number;
  succeeded: number;
  failed: number;
  pending?: number;
  cancelled?: number;
}

interface Latency {
  p50: number | null;
  p95: number | null;
  p99: number | null;
}

interface Bucket {
  from: string;
  to: string;
  succeeded: number;
  failed: number;
  attempts: number;
  p95Ms: number | null;
}

interface Summary {
  window: string;
  from: string;
  to: string;
  deliveries: Counts;
  attempts: Counts;
  successRate: number | null;
  latencyMs: Latency | null;
}

interface WebhookStats extends Summary {
  webhookId: string;
  errors: Array<{ code: string; count: number }>;
  series: Bucket[];
}

interface ProjectStats extends Summary {
  projectId: string;
  webhooks: Array<{ webhookId: string; name: string; url: string; enabled: boolean; health: { status: string } | string; deliveries: Counts; successRate: number | null; latencyMs: Latency | null }>;
}

const BUCKET = { '24h': 'hour', '7d': '6 hours', '30d': 'day' } as Record<string, string>;

function summaryPairs(s: Summary): Array<[string, string]> {
  const d = s.deliveries;
  return [
    ['window', `${s.window} (${s.from} to ${s.to})`],
    ['deliveries', `${d.total} total, ${d.succeeded} succeeded, ${d.failed} failed, ${d.pending ?? 0} pending, ${d.cancelled ?? 0} cancelled`],
    ['attempts', `${s.attempts.total} total, ${s.attempts.succeeded} succeeded, ${s.attempts.failed} failed`],
    ['success rate', percent(s.successRate)],
    ['latency', s.latencyMs ? `p50 ${ms(s.latencyMs.p50)}, p95 ${ms(s.latencyMs.p95)}, p99 ${ms(s.latencyMs.p99)}` : '-'],
  ];
}

/** The webhook's summary, its errors, and sparklines of the series (deliveries that ended, and failures, per bucket). */
export function renderWebhookStats(s: WebhookStats): string[] {
  const pairs = summaryPairs(s);
  pairs.push(['errors', s.errors.length ? s.errors.map((e) => `${e.code} ×${e.count}`).join(', ') : 'none']);
  const ended = s.series.map((b) => b.succeeded + b.failed);
  const failed = s.series.map((b) => b.failed);
  const label = `per ${BUCKET[s.window] ?? 'bucket'}`;
  return [
    keyValues(pairs),
    '',
    table(
      ['SERIES', label.toUpperCase(), 'MAX'],
      [
        ['deliveries', sparkline(ended), Math.max(0, ...ended)],
        ['failed', sparkline(failed), Math.max(0, ...failed)],
        ['attempts', sparkline(s.series.map((b) => b.attempts)), Math.max(0, ...s.series.map((b) => b.attempts))],
      ],
    ),
  ];
}

export function registerStats(program: Command, io: Io): void {
  program
    .command('stats')
    .description("a webhook's or a project's delivery statistics (test deliveries left out)")
    .option('--webhook <webhookId>', 'one webhook, with its series')
    .option('--project <projectId>', 'a project, with a line per webhook')
    .addOption(new Option('--window <window>', 'time window').choices(['24h', '7d', '30d']).default('24h'))
    .action(async (opts: { webhook?: string; project?: string; window: string }, cmd: Command) => {
      if (!opts.webhook === !opts.project) cmd.error('error: give one of --webhook or --project', { exitCode: 2, code: 'bellhop.usage' });
      const ctx = Context.of(cmd, io);
      if (opts.webhook) {
        const answer = await ctx.client().get<{ stats: WebhookStats }>(`/webhooks/${encodeURIComponent(opts.webhook)}/stats`, { window: opts.window });
        ctx.output(answer, () => renderWebhookStats(answer.stats));
        return;
      }
      const answer = await ctx.client().get<{ stats: ProjectStats }>(`/projects/${encodeURIComponent(opts.project!)}/stats`, { window: opts.window });
      const s = answer.stats;
      ctx.output(answer, () => [
        keyValues(summaryPairs(s)),
        '',
        table(
          ['WEBHOOK', 'NAME', 'ENABLED', 'HEALTH', 'DELIVERIES', 'FAILED', 'SUCCESS', 'P95'],
          s.webhooks.map((w) => [
            w.webhookId,
            clip(w.name, 30),
            w.enabled ? 'yes' : 'no',
            typeof w.health === 'string' ? w.health : w.health?.status,
            w.deliveries.total,
            w.deliveries.failed,
            percent(w.successRate),
            ms(w.latencyMs?.p95),
          ]),
        ),
      ]);
    });
}
