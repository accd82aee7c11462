import { Command, CommanderError } from 'commander';
import { ApiError, formatApiError, NetworkError } from './api-client';
import { registerAuth } from './commands/auth';
import { registerConfig } from './commands/config';
import { registerDeliveries } from './commands/deliveries';
import { registerEvents } from './commands/events';
import { registerProjects } from './commands/projects';
import { registerReplay } from './commands/replay';
import { registerSources } from './commands/sources';
import { registerStats } from './commands/stats';
import { registerVerify } from './commands/verify';
import { registerWebhooks } from './commands/webhooks';
import type { Io } from './context';
import { CliError, EXIT_CODES_HELP, ExitCode } from './exit-codes';

const ENVIRONMENT_HELP = `Environment:
  BELLHOP_API    API base URL (over the stored one; --api is over both)
  BELLHOP_TOKEN  token to use instead of the stored login (a session or an API token)

Credentials are stored in $XDG_CONFIG_HOME/bellhop/credentials.json (default ~/.config/bellhop), mode 0600.`;

export function buildProgram(io: Io, version: string): Command {
  const program = new Command('bellhop')
    .description('Bellhop from the command line: projects, webhooks, events, deliveries, replays, stats, and offline signature checks.')
    .version(version, '-V, --version')
    .option('--api <url>', 'API base URL (default: BELLHOP_API, the stored login, or http://127.0.0.1:3000)')
    .option('--json', "print the API's JSON (or a JSON result) instead of tables, for scripts")
    // Usage errors exit 2 (see run), not commander's default 1, which means a failed operation here.
    .exitOverride()
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({ writeOut: (text) => io.stdout.write(text), writeErr: (text) => io.stderr.write(text) })
    .addHelpText('after', `\n${EXIT_CODES_HELP}\n\n${ENVIRONMENT_HELP}`);
  registerAuth(program, io);
  registerProjects(program, io);
  registerWebhooks(program, io);
  registerEvents(program, io);
  registerDeliveries(program, io);
  registerReplay(program, io);
  registerStats(program, io);
  registerSources(program, io);
  registerVerify(program, io);
  registerConfig(program, io);
  return program;
}

/** Runs one command line (without `node` and the script) and gives the exit code; never exits the process itself. */
export async function run(args: string[], io: Io, version = '0.0.0'): Promise<ExitCode> {
  const program = buildProgram(io, version);
  try {
    await program.parseAsync(args, { from: 'user' });
    return ExitCode.ok;
  } catch (err) {
    return report(err, io);
  }
}

function report(err: unknown, io: Io): ExitCode {
  const write = (lines: string | string[]) => io.stderr.write((Array.isArray(lines) ? lines.join('\n') : lines) + '\n');
  if (err instanceof CommanderError) {
    // Commander has printed its message (or the help, or the version) already.
    return err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.exitCode === 0 ? ExitCode.ok : ExitCode.usage;
  }
  if (err instanceof ApiError) {
    write(formatApiError(err));
    if (err.status === 401) write('Log in again with `bellhop login`, or check BELLHOP_TOKEN.');
    return err.exitCode;
  }
  if (err instanceof NetworkError || err instanceof CliError) {
    if (err.message) write(`Error: ${err.message}`);
    return err.exitCode;
  }
  write(`Error: ${err instanceof Error ? err.message : String(err)}`);
  return ExitCode.failure;
}
