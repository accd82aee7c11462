import { Command } from 'commander';
import { ApiClient, ApiError, NetworkError } from '../api-client';
import { DEFAULT_API, deleteCredentials, isApiToken, Resolved, StoredLoginElsewhere, writeCredentials } from '../credentials';
import { Context, Io } from '../context';
import { CliError, ExitCode, usageError } from '../exit-codes';
import { table } from '../format';
import { promptHidden, promptLine, readFirstLine } from '../prompt';

interface Me {
  user: { id: string; email: string; name: string } | null;
  apiToken?: { id: string };
  memberships: Array<{ organization: { id: string; name: string; plan: string }; role: string }>;
}

interface LoginAnswer {
  user: { id: string; email: string; name: string; createdAt: string };
  session: { token: string; expiresAt: string };
}

export function registerAuth(program: Command, io: Io): void {
  program
    .command('login')
    .description('log in with email and password (a session), or store an API token; the password is asked for when not given')
    .option('--email <email>', 'account email (asked for on a terminal when left out)')
    .option('--password <password>', 'password (visible to other users of this machine: prefer the prompt or --password-stdin)')
    .option('--password-stdin', 'read the password from the first line of standard input')
    .option('--token <token>', 'an API token (bht_...) to store instead of logging in; checked against the API first')
    .action(async (opts: { email?: string; password?: string; passwordStdin?: boolean; token?: string }, cmd: Command) => {
      const ctx = Context.of(cmd, io);
      // Logging in talks to the API named by --api, BELLHOP_API or the default; a stored login does not redirect it.
      const api = ctx.apiFlag || io.env.BELLHOP_API || storedApi(ctx) || DEFAULT_API;
      if (io.env.BELLHOP_TOKEN) ctx.note('Note: BELLHOP_TOKEN is set and takes precedence over the stored login.');
      if (opts.token) {
        const me = await new ApiClient(api, opts.token).get<Me>('/auth/me');
        writeCredentials(ctx.credentialsPath, { api, token: opts.token });
        ctx.output({ ...me, api, credentialsPath: ctx.credentialsPath }, () => [`Logged in to ${api} as ${describe(me)}.`, `Credentials stored in ${ctx.credentialsPath}`]);
        return;
      }
      const interactive = io.stdin.isTTY === true;
      const email = opts.email ?? (interactive ? await promptLine('Email: ', io.stdin, io.stderr) : undefined);
      if (!email) throw usageError('Give --email (standard input is not a terminal to ask on)');
      let password = opts.password;
      if (password === undefined && opts.passwordStdin) password = await readFirstLine(io.stdin);
      if (password === undefined && interactive) password = await promptHidden('Password: ', io.stdin, io.stderr);
      if (password === undefined) throw usageError('Give --password-stdin or --password (standard input is not a terminal to ask on)');
      const answer = await new ApiClient(api, null).post<LoginAnswer>('/auth/login', { email, password }, { auth: false });
      writeCredentials(ctx.credentialsPath, { api, token: answer.session.token });
      // The token itself stays in the 0600 file: never printed, not even with --json.
      ctx.output({ user: answer.user, session: { expiresAt: answer.session.expiresAt }, api, credentialsPath: ctx.credentialsPath }, () => [
        `Logged in to ${api} as ${answer.user.email}; the session expires ${answer.session.expiresAt}.`,
        `Credentials stored in ${ctx.credentialsPath}`,
      ]);
    });

  program
    .command('logout')
    .description('revoke the session (API tokens are revoked in the API instead) and delete the stored credentials')
    .action(async (_opts: unknown, cmd: Command) => {
      const ctx = Context.of(cmd, io);
      let resolved: Resolved;
      try {
        resolved = ctx.resolved();
      } catch (err) {
        // A login stored for another API is left alone: deleting it here would leave its session
        // valid there, unrevoked. Logging out of that API is `bellhop logout` without the override.
        if (err instanceof StoredLoginElsewhere) throw err;
        // An unreadable or damaged file holds no session to revoke: deleting it is all logout can do.
        resolved = { api: DEFAULT_API, token: null, tokenSource: null };
      }
      let revoked: 'revoked' | 'expired' | 'api_token' | 'none' = 'none';
      let unreachable: NetworkError | null = null;
      if (resolved.token && !isApiToken(resolved.token)) {
        try {
          await ctx.client().post('/auth/logout');
          revoked = 'revoked';
        } catch (err) {
          if (err instanceof ApiError && err.status === 401) revoked = 'expired';
          else if (err instanceof NetworkError) unreachable = err;
          else throw err;
        }
      } else if (resolved.token) {
        revoked = 'api_token';
      }
      // The file goes even when the API is unreachable: logging out on this machine must not depend on it.
      const deleted = deleteCredentials(ctx.credentialsPath);
      ctx.output({ session: revoked, credentialsDeleted: deleted, credentialsPath: ctx.credentialsPath }, () => {
        const lines: string[] = [];
        if (revoked === 'revoked') lines.push('Session revoked.');
        if (revoked === 'expired') lines.push('The session had already ended.');
        if (revoked === 'api_token') lines.push('API tokens are not revoked by logout: revoke it with DELETE /api-tokens/{id} if it should stop working.');
        lines.push(deleted ? `Deleted ${ctx.credentialsPath}.` : 'No stored credentials.');
        if (io.env.BELLHOP_TOKEN) lines.push('BELLHOP_TOKEN is still set in this environment.');
        return lines;
      });
      if (unreachable) throw new CliError(`${unreachable.message}; the session was not revoked and stays valid until it expires`, ExitCode.network);
    });

  program
    .command('whoami')
    .description('show who the stored token or BELLHOP_TOKEN belongs to, and their organizations')
    .action(async (_opts: unknown, cmd: Command) => {
      const ctx = Context.of(cmd, io);
      const resolved = ctx.resolved();
      const me = await ctx.client().get<Me>('/auth/me');
      ctx.output(me, () => [
        `${describe(me)} on ${resolved.api} (token from ${resolved.tokenSource === 'env' ? 'BELLHOP_TOKEN' : ctx.credentialsPath})`,
        '',
        table(
          ['ORGANIZATION', 'NAME', 'PLAN', 'ROLE'],
          me.memberships.map((m) => [m.organization.id, m.organization.name, m.organization.plan, m.role]),
        ),
      ]);
    });
}

/** The API of the stored login, to log in again to the same one; a damaged file is about to be replaced anyway. */
function storedApi(ctx: Context): string | undefined {
  try {
    return ctx.stored()?.api;
  } catch {
    return undefined;
  }
}

function describe(me: Me): string {
  if (me.user) return `${me.user.email} (${me.user.id})`;
  const role = me.memberships[0]?.role;
  return `API token ${me.apiToken?.id ?? '?'}${role ? ` (${role})` : ''}`;
}
