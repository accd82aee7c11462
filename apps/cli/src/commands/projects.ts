import { Command } from 'commander';
import { Context, Io, positiveInteger } from '../context';
import { keyValues, table } from '../format';

export interface Project {
  id: string;
  name: string;
  organizationId: string;
  retentionDays: number;
  createdAt: string;
}

export function registerProjects(program: Command, io: Io): void {
  const projects = program.command('projects').description('list and create projects');

  projects
    .command('list')
    .description('the projects of your organizations')
    .action(async (_opts: unknown, cmd: Command) => {
      const ctx = Context.of(cmd, io);
      const answer = await ctx.client().get<{ projects: Project[] }>('/projects');
      ctx.output(answer, () =>
        table(
          ['ID', 'NAME', 'ORGANIZATION', 'RETENTION', 'CREATED'],
          answer.projects.map((p) => [p.id, p.name, p.organizationId, `${p.retentionDays}d`, p.createdAt]),
        ),
      );
    });

  projects
    .command('create')
    .description('create a project')
    .argument('<name>', 'project name')
    .option('--organization <orgId>', 'organization (needed when you belong to more than one)')
    .option('--retention-days <days>', 'history retention, 1 to 90 days', positiveInteger)
    .action(async (name: string, opts: { organization?: string; retentionDays?: number }, cmd: Command) => {
      const ctx = Context.of(cmd, io);
      const answer = await ctx.client().post<{ project: Project }>('/projects', { name, organizationId: opts.organization, retentionDays: opts.retentionDays });
      const p = answer.project;
      ctx.output(answer, () =>
        keyValues([
          ['id', p.id],
          ['name', p.name],
          ['organization', p.organizationId],
          ['retention', `${p.retentionDays} days`],
          ['created', p.createdAt],
        ]),
      );
    });
}
