import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentialsPath, deleteCredentials, isApiToken, readCredentials, resolveCredentials, writeCredentials } from './credentials';
import { CliError, ExitCode } from './exit-codes';

describe('credentialsPath', () => {
  it('uses an absolute XDG_CONFIG_HOME, else ~/.config', () => {
    expect(credentialsPath({ XDG_CONFIG_HOME: '/cfg', HOME: '/home/a' })).toBe('/cfg/bellhop/credentials.json');
    expect(credentialsPath({ XDG_CONFIG_HOME: 'relative', HOME: '/home/a' })).toBe('/home/a/.config/bellhop/credentials.json');
    expect(credentialsPath({}, '/home/b')).toBe('/home/b/.config/bellhop/credentials.json');
  });
});

describe('writeCredentials', () => {
  let dir: string;
  let umask: number;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'bellhop-credentials-'));
    // The loosest umask: the modes must not depend on the user's.
    umask = process.umask(0);
  });
  afterEach(() => {
    process.umask(umask);
    rmSync(dir, { recursive: true, force: true });
  });

  it('writes the file 0600 in a directory 0700, even over a looser existing directory and file', () => {
    const path = join(dir, 'bellhop', 'credentials.json');
    mkdirSync(join(dir, 'bellhop'), { mode: 0o777 });
    writeFileSync(path, '{}', { mode: 0o644 });
    chmodSync(path, 0o644);
    writeCredentials(path, { api: 'http://127.0.0.1:3000', token: 'bht_x' });
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, 'bellhop')).mode & 0o777).toBe(0o700);
    expect(readCredentials(path)).toEqual({ api: 'http://127.0.0.1:3000', token: 'bht_x' });
    expect(JSON.parse(readFileSync(path, 'utf8'))).toEqual({ api: 'http://127.0.0.1:3000', token: 'bht_x' });
  });

  it('reads nothing when there is no file, and refuses a file of the wrong shape', () => {
    const path = join(dir, 'credentials.json');
    expect(readCredentials(path)).toBeNull();
    writeFileSync(path, '{"token": 1}');
    expect(() => readCredentials(path)).toThrow(/not a credentials file/);
    expect(deleteCredentials(path)).toBe(true);
    expect(existsSync(path)).toBe(false);
    expect(deleteCredentials(path)).toBe(false);
  });
});

describe('resolveCredentials', () => {
  const stored = { api: 'https://stored.example', token: 'stored-token' };

  it('takes --api over BELLHOP_API over the stored API, and BELLHOP_TOKEN over the stored token', () => {
    expect(resolveCredentials(stored, {})).toEqual({ api: 'https://stored.example', token: 'stored-token', tokenSource: 'file' });
    expect(resolveCredentials(stored, { BELLHOP_API: 'https://env.example', BELLHOP_TOKEN: 'bht_env' })).toEqual({ api: 'https://env.example', token: 'bht_env', tokenSource: 'env' });
    expect(resolveCredentials(stored, { BELLHOP_API: 'https://env.example', BELLHOP_TOKEN: 'bht_env' }, 'https://flag.example').api).toBe('https://flag.example');
    expect(resolveCredentials(null, {})).toEqual({ api: 'http://127.0.0.1:3000', token: null, tokenSource: null });
  });

  it('sends the stored token only to the API it was stored for', () => {
    const issued = { api: 'https://bellhop.example.com', token: 'stored-token' };
    for (const same of ['https://bellhop.example.com/', 'HTTPS://Bellhop.Example.com:443', 'https://bellhop.example.com:443/']) {
      expect(resolveCredentials(issued, { BELLHOP_API: same })).toEqual({ api: same, token: 'stored-token', tokenSource: 'file' });
    }
    const other = new CliError('The stored login is for https://bellhop.example.com, not http://127.0.0.1:39111: set BELLHOP_TOKEN, or run `bellhop login --api http://127.0.0.1:39111`', ExitCode.unauthenticated);
    expect(() => resolveCredentials(issued, {}, 'http://127.0.0.1:39111')).toThrow(other);
    expect(() => resolveCredentials(issued, { BELLHOP_API: 'http://127.0.0.1:39111' })).toThrow(other);
    for (const different of ['http://bellhop.example.com', 'https://bellhop.example.com:8443', 'https://bellhop.example.com/v2', 'https://bellhop.example.com.evil.test']) {
      expect(() => resolveCredentials(issued, { BELLHOP_API: different })).toThrow(`The stored login is for https://bellhop.example.com, not ${different}`);
    }
    const thrown = (() => {
      try {
        resolveCredentials(issued, { BELLHOP_API: 'http://127.0.0.1:39111' });
      } catch (err) {
        return err;
      }
    })();
    expect(thrown).toBeInstanceOf(CliError);
    expect((thrown as CliError).exitCode).toBe(ExitCode.unauthenticated);
    // Its own token is the caller's to send anywhere.
    expect(resolveCredentials(issued, { BELLHOP_API: 'http://127.0.0.1:39111', BELLHOP_TOKEN: 'bht_env' }).token).toBe('bht_env');
  });

  it('tells API tokens from sessions', () => {
    expect(isApiToken('bht_abc')).toBe(true);
    expect(isApiToken('eyJhbGciOi...')).toBe(false);
  });
});
