import { Command, Option } from 'commander';
import { Context, Io } from '../context';
import { keyValues, table } from '../format';
import { readArgument } from '../input';

export interface Source {
  id: string;
  projectId: string;
  name: string;
  type: 'github' | 'gitlab';
  url: string;
  createdAt: string;
}

/** Where each sender takes the URL and the secret. */
const WHERE: Record<Source['type'], string> = {
  github: 'In GitHub: Settings → Webhooks → Add webhook. Payload URL: the url above; Content type: application/json; Secret: the secret above.',
  gitlab: 'In GitLab: Settings → Webhooks → Add new webhook. URL: the url above; Secret token: the secret above.',
};

export function registerSources(program: Command, io: Io): void {
  const sources = program.command('sources').description('inbound sources: GitHub and GitLab deliveries published as github.* and gitlab.* events');

  sources
    .command('list')
    .description("a project's inbound sources (their secrets are never shown again)")
    .requiredOption('--project <projectId>', 'project')
    .action(async (opts: { project: string }, cmd: Command) => {
      const ctx = Context.of(cmd, io);
      const answer = await ctx.client().get<{ sources: Source[] }>(`/projects/${encodeURIComponent(opts.project)}/sources`);
      ctx.output(answer, () =>
        table(
          ['ID', 'NAME', 'TYPE', 'URL', 'CREATED'],
          answer.sources.map((s) => [s.id, s.name, s.type, s.url, s.createdAt]),
        ),
      );
    });

  sources
    .command('create')
    .description('create an inbound source; its URL and secret go into the sender, and the secret is shown once, here')
    .requiredOption('--project <projectId>', 'project')
    .requiredOption('--name <name>', 'a name for it, such as the repository')
    .addOption(new Option('--type <type>', 'who sends to it').choices(['github', 'gitlab']).makeOptionMandatory())
    .option('--secret <secret>', 'your own secret (16 to 256 printable characters), or @file; default: generated')
    .action(async (opts: { project: string; name: string; type: Source['type']; secret?: string }, cmd: Command) => {
      const ctx = Context.of(cmd, io);
      const body: Record<string, unknown> = { name: opts.name, type: opts.type };
      if (opts.secret !== undefined) body.secret = readArgument(opts.secret, '--secret').trim();
      const answer = await ctx.client().post<{ source: Source; secret: string }>(`/projects/${encodeURIComponent(opts.project)}/sources`, body);
      const s = answer.source;
      ctx.output(answer, () => [
        keyValues([
          ['id', s.id],
          ['project', s.projectId],
          ['name', s.name],
          ['type', s.type],
          ['url', s.url],
          ['secret', answer.secret],
          ['created', s.createdAt],
        ]),
        '',
        WHERE[s.type],
        'The secret is shown only now: keep it.',
      ]);
    });

  sources
    .command('delete')
    .description('delete an inbound source; deliveries to its URL are refused from then on')
    .argument('<sourceId>')
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      const ctx = Context.of(cmd, io);
      await ctx.client().delete(`/sources/${encodeURIComponent(id)}`);
      ctx.output({ deleted: id }, () => `Deleted ${id}.`);
    });
}
