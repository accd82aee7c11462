import { chmodSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';
import { CliError, ExitCode } from './exit-codes';

export const DEFAULT_API = 'http://127.0.0.1:3000';

export interface Credentials {
  api: string;
  token: string;
}

/**
 * `$XDG_CONFIG_HOME/bellhop/credentials.json`, or `~/.config/bellhop/credentials.json`. A relative
 * XDG_CONFIG_HOME is ignored, as the XDG specification says.
 */
export function credentialsPath(env: NodeJS.ProcessEnv, home: string = homedir()): string {
  const xdg = env.XDG_CONFIG_HOME;
  const base = xdg && isAbsolute(xdg) ? xdg : join(env.HOME || home, '.config');
  return join(base, 'bellhop', 'credentials.json');
}

export function readCredentials(path: string): Credentials | null {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new CliError(`Cannot read ${path}: ${(err as Error).message}`, ExitCode.failure);
  }
  try {
    const parsed = JSON.parse(text) as Partial<Credentials>;
    if (typeof parsed.api === 'string' && typeof parsed.token === 'string') return { api: parsed.api, token: parsed.token };
  } catch {
    // Reported below, like a file of the wrong shape.
  }
  throw new CliError(`${path} is not a credentials file: run \`bellhop login\` again`, ExitCode.unauthenticated);
}

/**
 * Writes the token readable by its owner only: the directory 0700, the file 0600 from its first
 * byte (a temporary file created with that mode, then renamed over the old one), so that no other
 * user can read it even for a moment and a crash never leaves half a file.
 */
export function writeCredentials(path: string, credentials: Credentials): void {
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const temporary = `${path}.${process.pid}.tmp`;
  try {
    writeFileSync(temporary, JSON.stringify(credentials, null, 2) + '\n', { mode: 0o600, flag: 'wx' });
    chmodSync(temporary, 0o600);
    renameSync(temporary, path);
  } catch (err) {
    rmSync(temporary, { force: true });
    throw new CliError(`Cannot write ${path}: ${(err as Error).message}`, ExitCode.failure);
  }
}

export function deleteCredentials(path: string): boolean {
  try {
    rmSync(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw new CliError(`Cannot delete ${path}: ${(err as Error).message}`, ExitCode.failure);
  }
}

/** The stored login belongs to another API than the one asked for: its token is not sent there. */
export class StoredLoginElsewhere extends CliError {}

export interface Resolved {
  api: string;
  token: string | null;
  /** Where the token came from, for whoami and logout. */
  tokenSource: 'env' | 'file' | null;
}

/**
 * The API and token in force: `--api` over BELLHOP_API over the stored API; BELLHOP_TOKEN over the
 * stored token. The stored token goes only to the API that issued it: sent to any other (a typo, a
 * test server, plain http) it would be handed to whoever answers there.
 */
export function resolveCredentials(stored: Credentials | null, env: NodeJS.ProcessEnv, apiFlag?: string): Resolved {
  const api = apiFlag || env.BELLHOP_API || stored?.api || DEFAULT_API;
  if (env.BELLHOP_TOKEN) return { api, token: env.BELLHOP_TOKEN, tokenSource: 'env' };
  if (stored && !sameApi(api, stored.api)) {
    throw new StoredLoginElsewhere(
      `The stored login is for ${stored.api}, not ${api}: set BELLHOP_TOKEN, or run \`bellhop login --api ${api}\``,
      ExitCode.unauthenticated,
    );
  }
  return { api, token: stored?.token ?? null, tokenSource: stored ? 'file' : null };
}

/** Whether two API addresses name the same API: scheme, host and port (the default one written or not), and path but for a trailing slash. */
export function sameApi(a: string, b: string): boolean {
  return apiKey(a) === apiKey(b);
}

function apiKey(api: string): string {
  let url: URL;
  try {
    url = new URL(api.trim());
  } catch {
    // Not a URL: the API client will say so; only the very same text counts as the same API.
    return api.trim();
  }
  return `${url.protocol}//${url.hostname}:${url.port}${url.pathname.replace(/\/+$/, '')}`;
}

/** API tokens are `bht_...`; anything else the API issued is a session (a JWT), which logout revokes. */
export function isApiToken(token: string): boolean {
  return token.startsWith('bht_');
}
