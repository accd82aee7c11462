import { Command, Option } from 'commander';
import { Context, Io } from '../context';
import { reportedFailure, usageError } from '../exit-codes';
import { clip, keyValues, table } from '../format';
import { collectHeader, parseList, readArgument, readJsonArgument } from '../input';
import { deliveryPairs, type Delivery } from './deliveries';

export interface Webhook {
  id: string;
  projectId: string;
  name: string;
  url: string;
  events: string[];
  enabled: boolean;
  description: string | null;
  disabledReason: string | null;
  headers: Record<string, string>;
  retrySchedule: string[];
  format: string;
  createdAt: string;
  updatedAt: string;
  health: { status: string; failingSince: string | null; lastSuccessAt: string | null; lastFailureAt: string | null; autoDisableAt: string | null };
}

const FORMATS = ['bellwether', 'slack', 'discord', 'template'];

interface FieldOptions {
  url?: string;
  events?: string;
  name?: string;
  description?: string;
  format?: string;
  template?: string;
  retrySchedule?: string;
  header?: Record<string, string>;
}

/** The create and update fields shared by both routes, as the API names them. */
function fields(opts: FieldOptions): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  if (opts.url !== undefined) body.url = opts.url;
  if (opts.events !== undefined) body.events = parseList(opts.events);
  if (opts.name !== undefined) body.name = opts.name;
  if (opts.description !== undefined) body.description = opts.description;
  if (opts.format !== undefined) body.format = opts.format;
  if (opts.template !== undefined) body.template = readJsonArgument(opts.template, '--template');
  // "default" goes back to the server's schedule (null in the API).
  if (opts.retrySchedule !== undefined) body.retrySchedule = opts.retrySchedule === 'default' ? null : parseList(opts.retrySchedule);
  if (opts.header !== undefined) body.headers = opts.header;
  return body;
}

function withFieldOptions(command: Command): Command {
  return command
    .option('--name <name>', 'display name (default: the URL host)')
    .option('--description <text>', 'description')
    .addOption(new Option('--format <format>', 'body format').choices(FORMATS))
    .option('--template <json>', 'template body for --format template: JSON, or @file.json')
    .option('--retry-schedule <waits>', 'waits between attempts, e.g. 1m,5m,30m (update: "default" for the server\'s)')
    .option('--header <name: value>', 'custom request header, repeatable', collectHeader);
}

export function webhookPairs(w: Webhook): Array<[string, string | null]> {
  return [
    ['id', w.id],
    ['project', w.projectId],
    ['name', w.name],
    ['url', w.url],
    ['events', w.events.join(', ')],
    ['enabled', w.enabled ? 'yes' : `no${w.disabledReason ? ` (${w.disabledReason})` : ''}`],
    ['health', w.health.status],
    ['last success', w.health.lastSuccessAt],
    ['last failure', w.health.lastFailureAt],
    ['format', w.format],
    ['retry schedule', w.retrySchedule.join(', ') || 'none'],
    ['headers', Object.keys(w.headers ?? {}).join(', ') || null],
    ['description', w.description],
    ['created', w.createdAt],
  ];
}

export function registerWebhooks(program: Command, io: Io): void {
  const webhooks = program.command('webhooks').description('manage webhooks (subscriptions)');

  webhooks
    .command('list')
    .description("a project's webhooks")
    .requiredOption('--project <projectId>', 'project')
    .action(async (opts: { project: string }, cmd: Command) => {
      const ctx = Context.of(cmd, io);
      const answer = await ctx.client().get<{ webhooks: Webhook[] }>(`/projects/${encodeURIComponent(opts.project)}/webhooks`);
      ctx.output(answer, () =>
        table(
          ['ID', 'NAME', 'URL', 'EVENTS', 'ENABLED', 'HEALTH'],
          answer.webhooks.map((w) => [w.id, clip(w.name, 30), clip(w.url), clip(w.events.join(','), 40), w.enabled ? 'yes' : 'no', w.health.status]),
        ),
      );
    });

  withFieldOptions(
    webhooks
      .command('create')
      .description('create a webhook; its secret is shown once, here')
      .requiredOption('--project <projectId>', 'project')
      .requiredOption('--url <url>', 'destination URL (https://)')
      .requiredOption('--events <types>', 'event types, comma-separated; "*" or "baseline.*" for wildcards')
      .option('--secret <secret>', 'your own secret (whsec_ + base64 of 24 to 64 bytes), or @file; default: generated')
      .option('--disabled', 'create it disabled'),
  ).action(async (opts: FieldOptions & { project: string; secret?: string; disabled?: boolean }, cmd: Command) => {
    const ctx = Context.of(cmd, io);
    const body = fields(opts);
    if (opts.secret !== undefined) body.secret = readArgument(opts.secret, '--secret').trim();
    if (opts.disabled) body.enabled = false;
    const answer = await ctx.client().post<{ webhook: Webhook; secret: string }>(`/projects/${encodeURIComponent(opts.project)}/webhooks`, body);
    ctx.output(answer, () => [keyValues([...webhookPairs(answer.webhook), ['secret', answer.secret]]), '', 'The secret is shown only now, at rotation and by `bellhop webhooks secret`: keep it.']);
  });

  webhooks
    .command('get')
    .description('one webhook, with its health')
    .argument('<webhookId>')
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      const ctx = Context.of(cmd, io);
      const answer = await ctx.client().get<{ webhook: Webhook }>(`/webhooks/${encodeURIComponent(id)}`);
      ctx.output(answer, () => keyValues(webhookPairs(answer.webhook)));
    });

  withFieldOptions(
    webhooks
      .command('update')
      .description('change a webhook (the secret changes only by rotation)')
      .argument('<webhookId>')
      .option('--url <url>', 'destination URL')
      .option('--events <types>', 'event types, comma-separated')
      .option('--enable', 're-enable it (clears the disabled reason and the run of failures)')
      .option('--disable', 'disable it'),
  ).action(async (id: string, opts: FieldOptions & { enable?: boolean; disable?: boolean }, cmd: Command) => {
    const ctx = Context.of(cmd, io);
    const body = fields(opts);
    if (opts.enable && opts.disable) throw usageError('Give --enable or --disable, not both');
    if (opts.enable) body.enabled = true;
    if (opts.disable) body.enabled = false;
    const answer = await ctx.client().patch<{ webhook: Webhook }>(`/webhooks/${encodeURIComponent(id)}`, body);
    ctx.output(answer, () => keyValues(webhookPairs(answer.webhook)));
  });

  webhooks
    .command('delete')
    .description('delete a webhook; its pending deliveries are cancelled, its history stays readable')
    .argument('<webhookId>')
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      const ctx = Context.of(cmd, io);
      await ctx.client().delete(`/webhooks/${encodeURIComponent(id)}`);
      ctx.output({ deleted: id }, () => `Deleted ${id}.`);
    });

  webhooks
    .command('test')
    .description("send the catalog's example event through the normal pipeline, marked test")
    .argument('<webhookId>')
    .option('--event <type>', 'event type to send (default: the first of the webhook)')
    .option('--wait', 'wait for the first attempt (up to 35 s); exit 1 unless it succeeded')
    .action(async (id: string, opts: { event?: string; wait?: boolean }, cmd: Command) => {
      const ctx = Context.of(cmd, io);
      const answer = await ctx
        .client()
        .request<{ delivery: Delivery }>('POST', `/webhooks/${encodeURIComponent(id)}/test`, { body: opts.event ? { event: opts.event } : {}, query: { wait: opts.wait ? 'true' : undefined } });
      const d = answer.body.delivery;
      ctx.output(answer.body, () => {
        const lines = [keyValues(deliveryPairs(d))];
        if (opts.wait && answer.status === 202) lines.push('', 'The first attempt had not finished after 35 s.');
        return lines;
      });
      if (opts.wait && d.status !== 'succeeded') throw reportedFailure();
    });

  webhooks
    .command('secret')
    .description('reveal the signing secret (owner/admin; audited)')
    .argument('<webhookId>')
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      const ctx = Context.of(cmd, io);
      const answer = await ctx.client().get<{ secret: string }>(`/webhooks/${encodeURIComponent(id)}/secret`);
      ctx.output(answer, () => answer.secret);
    });

  webhooks
    .command('rotate')
    .description('a new signing secret; the previous one keeps signing for 24 hours')
    .argument('<webhookId>')
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      const ctx = Context.of(cmd, io);
      const answer = await ctx.client().post<{ secret: string; previousSecretExpiresAt: string }>(`/webhooks/${encodeURIComponent(id)}/secret/rotate`);
      ctx.output(answer, () => keyValues([['secret', answer.secret], ['previous secret signs until', answer.previousSecretExpiresAt]]));
    });
}
