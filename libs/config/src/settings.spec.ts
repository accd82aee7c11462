import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SETTINGS } from './settings';

/** The settings config.ts reads: `env.NAME`, `env['NAME']` and `(env, 'NAME', ...)`. */
function namesReadByConfig(): string[] {
  const source = readFileSync(join(__dirname, 'config.ts'), 'utf8');
  const names = new Set<string>();
  for (const match of source.matchAll(/\benv(?:\.([A-Z][A-Z0-9_]*)|\[\s*'([A-Z][A-Z0-9_]*)'\s*\]|,\s*'([A-Z][A-Z0-9_]*)')/g)) {
    names.add(match[1] ?? match[2] ?? match[3]);
  }
  // Settings read through a helper that is handed its name (`within('HTTP_REQUEST_TIMEOUT', ...)`).
  for (const match of source.matchAll(/\bwithin\('([A-Z][A-Z0-9_]*)'/g)) names.add(match[1]);
  return [...names].sort();
}

describe('the settings table', () => {
  it('lists exactly the settings config.ts reads: a new setting needs its row (flag, file key, config init, boot log)', () => {
    expect(SETTINGS.map((setting) => setting.name).sort()).toEqual(namesReadByConfig());
  });

  it('lists each setting once, with a meaning and either a default or words for it', () => {
    const names = SETTINGS.map((setting) => setting.name);
    expect(new Set(names).size).toBe(names.length);
    for (const setting of SETTINGS) {
      expect(setting.meaning.length).toBeGreaterThan(10);
      expect(setting.default !== undefined || setting.defaultText !== undefined).toBe(true);
      if (setting.default === undefined) expect(setting.example).toBeDefined();
      if (setting.type === 'enum') expect(setting.values?.length).toBeGreaterThan(1);
    }
  });

  it('masks every setting whose name says it holds a secret or a URL', () => {
    for (const setting of SETTINGS) {
      if (/SECRET|PASSWORD|TOKEN|_KEY\b|_KEY_/.test(setting.name)) expect([setting.name, setting.mask]).toEqual([setting.name, 'secret']);
      if (/_URL$/.test(setting.name) && setting.name !== 'PUBLIC_URL') expect([setting.name, setting.mask]).toEqual([setting.name, 'url']);
    }
  });
});
