/**
 * What the process exit status means, so that scripts can tell a refused operation from a typo,
 * a missing login or an API that is down without parsing messages.
 */
export const ExitCode = {
  ok: 0,
  /** The operation failed: the API refused it (4xx/5xx), a signature did not verify, a batch was refused. */
  failure: 1,
  /** The command line was wrong: unknown command or option, missing argument, unreadable input file. */
  usage: 2,
  /** No credentials, or the API answered 401. */
  unauthenticated: 3,
  /** The API could not be reached (refused, timed out, name not resolved). */
  network: 4,
} as const;

export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

export const EXIT_CODES_HELP = `Exit codes:
  0  success
  1  the operation failed (the API refused it, a signature is invalid, a batch was refused)
  2  usage error (unknown command or option, bad argument, unreadable input)
  3  not logged in, or the API answered 401
  4  the API could not be reached`;

/** A failure that the command already explains in its message; main prints it and exits with `exitCode`. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: ExitCode,
  ) {
    super(message);
  }
}

export function usageError(message: string): CliError {
  return new CliError(message, ExitCode.usage);
}

/** The command has printed its result, and that result is a failure (verify invalid, a failed test delivery): exit 1, nothing more to say. */
export function reportedFailure(): CliError {
  return new CliError('', ExitCode.failure);
}
