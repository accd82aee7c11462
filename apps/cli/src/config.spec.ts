import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readConfigFile } from '../../../libs/config/src/layers';
import { SETTINGS } from '../../../libs/config/src/settings';
import { runCaptured } from './testing';

const bellhop = (args: string[]) => runCaptured(args);

describe('bellhop config init', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'bellhop-conf-init-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('writes a commented YAML file with every setting, readable only by its owner, that the servers accept', async () => {
    const file = join(dir, 'bellhop.yaml');
    const result = await bellhop(['config', 'init', '--output', file]);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`Wrote ${file}.`);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const text = readFileSync(file, 'utf8');
    for (const setting of SETTINGS) expect(text).toContain(`# ${setting.name}: `);
    expect(text).toContain('# Default: none in production.\n# JWT_SECRET: ""');
    expect(readConfigFile(file).values).toEqual({});
  });

  it('never replaces an existing file without --force', async () => {
    const file = join(dir, 'kept.yaml');
    writeFileSync(file, 'PORT: 4000\n');
    const refused = await bellhop(['config', 'init', '--output', file]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toBe(`Error: ${file} exists: pass --force to replace it\n`);
    expect(readFileSync(file, 'utf8')).toBe('PORT: 4000\n');
    expect((await bellhop(['config', 'init', '--output', file, '--force'])).code).toBe(0);
    expect(readFileSync(file, 'utf8')).toContain('# PORT: 3000');
  });

  it('writes JSON as a plain object, says that it has no comments, and reports the file with --json', async () => {
    const file = join(dir, 'bellhop.json');
    const result = await bellhop(['config', 'init', '--format', 'json', '--output', file]);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('JSON has no comments');
    expect(readConfigFile(file).values).toMatchObject({ PORT: '3000', RETRY_SCHEDULE: '1m,5m,30m,2h', ALLOW_HTTP_DESTINATIONS: 'false' });
    const again = await bellhop(['--json', 'config', 'init', '--format', 'json', '--output', file, '--force']);
    expect(JSON.parse(again.stdout)).toMatchObject({ file, format: 'json', omitted: expect.arrayContaining(['JWT_SECRET', 'SECRETS_KEY']) });
  });

  it('prints to standard output with --output -, and refuses an unknown format as a usage error', async () => {
    const printed = await bellhop(['config', 'init', '--output', '-']);
    expect(printed.code).toBe(0);
    expect(printed.stdout).toMatch(/^# Bellhop settings/);
    expect((await bellhop(['config', 'init', '--format', 'toml'])).code).toBe(2);
  });
});
