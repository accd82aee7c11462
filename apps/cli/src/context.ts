import { Command, InvalidArgumentError } from 'commander';
import { ApiClient } from './api-client';
import { Credentials, credentialsPath, readCredentials, Resolved, resolveCredentials } from './credentials';
import type { ProgressStream } from './progress';

/** The process's streams and environment, passed in so that the program can run inside a test. */
export interface Io {
  stdout: NodeJS.WritableStream & ProgressStream;
  stderr: NodeJS.WritableStream & ProgressStream;
  stdin: NodeJS.ReadStream;
  env: NodeJS.ProcessEnv;
}

interface GlobalOptions {
  api?: string;
  json?: boolean;
}

/** What a command needs: its global options, the credentials in force, an API client, and where to write. */
export class Context {
  readonly json: boolean;
  readonly credentialsPath: string;
  private storedCache: Credentials | null | undefined;

  constructor(
    readonly io: Io,
    private readonly globals: GlobalOptions,
  ) {
    this.json = globals.json === true;
    this.credentialsPath = credentialsPath(io.env);
  }

  static of(command: Command, io: Io): Context {
    return new Context(io, command.optsWithGlobals<GlobalOptions>());
  }

  get apiFlag(): string | undefined {
    return this.globals.api;
  }

  stored(): Credentials | null {
    if (this.storedCache === undefined) this.storedCache = readCredentials(this.credentialsPath);
    return this.storedCache;
  }

  resolved(): Resolved {
    // The file is only read when neither the environment nor the flag gives everything.
    const env = this.io.env;
    if (env.BELLHOP_TOKEN && (this.globals.api || env.BELLHOP_API)) return resolveCredentials(null, env, this.globals.api);
    return resolveCredentials(this.stored(), env, this.globals.api);
  }

  client(token?: string | null): ApiClient {
    const resolved = this.resolved();
    return new ApiClient(resolved.api, token === undefined ? resolved.token : token);
  }

  /** A result: the API's JSON with --json, otherwise the text for people. */
  output(json: unknown, human: () => string | string[]): void {
    if (this.json) {
      this.io.stdout.write(JSON.stringify(json, null, 2) + '\n');
      return;
    }
    const text = human();
    const lines = Array.isArray(text) ? text.join('\n') : text;
    if (lines !== '') this.io.stdout.write(lines + '\n');
  }

  /** A remark beside the result (a warning, a hint): on stderr, so that stdout stays the result alone. */
  note(text: string): void {
    this.io.stderr.write(text + '\n');
  }
}

export function positiveInteger(value: string): number {
  if (!/^\d+$/.test(value) || Number(value) < 1) throw new InvalidArgumentError('expected a positive whole number');
  return Number(value);
}
