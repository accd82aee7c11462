import { readFileSync, statSync } from 'node:fs';
import { extname, resolve } from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import { isMap, isScalar, LineCounter, parseDocument } from 'yaml';
import { BellhopConfig, ConfigError } from './config';
import { CONFIG_FILE_VARIABLE, flagName, Setting, SETTINGS, settingNamed } from './settings';

/*
 * The start commands' settings come from four layers: flags over environment variables over the
 * config file (BELLHOP_CONFIG or --config) over the defaults. The layers are merged here into the
 * environment-variable form that loadConfig already parses, so every check it makes applies to a
 * value however it was given; this file only checks what the environment cannot express (unknown
 * keys, values of the wrong type in YAML or JSON).
 */

export type SettingSource = 'flag' | 'env' | 'file' | 'default';

type Env = Record<string, string | undefined>;

export interface ResolvedSettings {
  /** The settings as environment text, flags over environment over file: what loadConfig parses. */
  env: Env;
  /** Where each setting's value came from. */
  sources: Record<string, SettingSource>;
  /** The config file that was read (absolute), or null. */
  file: string | null;
  /** For the boot log, beside the configuration's own warnings. */
  warnings: string[];
  /** Set when --help was asked for: the text to print, and nothing else to do. */
  help?: string;
}

export interface ResolveOptions {
  /** The command line after the script (process.argv.slice(2)). */
  argv: string[];
  /** Default: process.env (with a .env file's values, which @nestjs/config loaded on import). */
  env?: Env;
  /** Named in --help and in messages: `bellhop-api`, `bellhop-worker`. */
  program: string;
  /** Relative config file names are read from here (default: the working directory). */
  cwd?: string;
}

/** The settings of one start, from its command line, its environment and the config file they name. */
export function resolveSettings(options: ResolveOptions): ResolvedSettings {
  const given = options.env ?? process.env;
  const flags = parseFlags(options.argv, options.program);
  if (flags.help !== undefined) return { env: { ...given }, sources: {}, file: null, warnings: [], help: flags.help };

  const named = flags.configFile ?? (given[CONFIG_FILE_VARIABLE] || undefined);
  const file = named === undefined ? null : resolve(options.cwd ?? process.cwd(), named);
  const fromFile = file === null ? { values: {}, warnings: [] } : readConfigFile(file, flags.configFile !== undefined ? '--config' : CONFIG_FILE_VARIABLE);

  const env: Env = { ...given };
  const sources: Record<string, SettingSource> = {};
  const warnings = [...fromFile.warnings];
  for (const setting of SETTINGS) {
    const { name } = setting;
    if (flags.values[name] !== undefined) {
      env[name] = flags.values[name];
      sources[name] = 'flag';
      // Command lines are visible to every user of the machine (ps, /proc/<pid>/cmdline).
      if (setting.mask === 'secret' || (setting.mask === 'url' && hasPassword(flags.values[name]))) {
        warnings.push(`WARNING: ${name} was given as the flag --${flagName(name)}: other users of this machine can read it in the process list; use the environment or the config file`);
      }
    } else if (given[name] !== undefined && given[name] !== '') {
      // An empty variable counts as unset, as loadConfig treats it (an EnvironmentFile's `PORT=`).
      sources[name] = 'env';
    } else if (fromFile.values[name] !== undefined) {
      env[name] = fromFile.values[name];
      sources[name] = 'file';
    } else {
      sources[name] = 'default';
    }
  }
  return { env, sources, file, warnings };
}

/**
 * Puts the file's and the flags' values into `target` (process.env at boot), as @nestjs/config
 * does with a .env file: everything that reads the settings then reads one merged record.
 */
export function applySettings(resolved: ResolvedSettings, target: Env = process.env): void {
  for (const [name, source] of Object.entries(resolved.sources)) {
    if (source === 'file' || source === 'flag') target[name] = resolved.env[name];
  }
}

// ---- Flags ----

interface ParsedFlags {
  values: Record<string, string>;
  configFile?: string;
  help?: string;
}

function describe(setting: Setting): string {
  const fallback = setting.default === undefined ? setting.defaultText : setting.default === '' ? 'empty' : String(setting.default);
  return `${setting.meaning} [${setting.name}${fallback ? `; default: ${fallback}` : ''}]`;
}

/** A parser of the start commands' flags: one per setting, `--worker-concurrency` for WORKER_CONCURRENCY. */
function flagParser(program: string): { command: Command; names: Map<string, string> } {
  const command = new Command(program)
    .usage('[options]')
    .description(`Starts ${program}. Every setting is a flag here, an environment variable and a key of the config file; a flag is over the environment, which is over the file, which is over the default.`)
    .addOption(new Option('--config <file>', `config file, YAML (.yaml, .yml) or JSON (.json); over ${CONFIG_FILE_VARIABLE}`))
    .helpOption('-h, --help', 'list the flags and exit')
    .allowExcessArguments(false)
    .exitOverride();
  const names = new Map<string, string>();
  for (const setting of SETTINGS) {
    const option =
      setting.type === 'boolean'
        ? new Option(`--${flagName(setting.name)} [true|false]`, describe(setting))
        : new Option(`--${flagName(setting.name)} <${setting.type === 'integer' ? 'number' : 'value'}>`, describe(setting));
    if (setting.values) option.choices(setting.values);
    command.addOption(option);
    names.set(option.attributeName(), setting.name);
  }
  command.addHelpText('after', `\nSecrets (JWT_SECRET, SECRETS_KEY, passwords in URLs) given as flags are visible in the process list: prefer the environment or the config file.\n\`bellhop config init\` writes a config file with every setting, its default and its meaning.`);
  return { command, names };
}

function parseFlags(argv: string[], program: string): ParsedFlags {
  const { command, names } = flagParser(program);
  let out = '';
  let err = '';
  command.configureOutput({ writeOut: (text) => (out += text), writeErr: (text) => (err += text), getOutHelpWidth: () => 100, getErrHelpWidth: () => 100 });
  try {
    command.parse(argv, { from: 'user' });
  } catch (error) {
    if (error instanceof CommanderError && error.code === 'commander.helpDisplayed') return { values: {}, help: out };
    if (error instanceof CommanderError) throw new ConfigError(`${(err.trim() || error.message).replace(/^error: /, '').replace(/\s*\n\s*/g, ' ')} (see ${program} --help)`);
    throw error;
  }
  const values: Record<string, string> = {};
  let configFile: string | undefined;
  for (const [attribute, value] of Object.entries(command.opts<Record<string, string | boolean>>())) {
    if (attribute === 'config') configFile = String(value);
    else if (names.has(attribute)) values[names.get(attribute)!] = String(value);
  }
  return { values, configFile };
}

// ---- The config file ----

/**
 * Reads a config file into environment text, keyed by setting name. Keys are the environment
 * variable names, and nothing else: one spelling is what the README, the environment, the boot
 * summary and the file all show. Every problem is a ConfigError naming the file (and the line,
 * for YAML) and the key.
 */
export function readConfigFile(file: string, namedBy = CONFIG_FILE_VARIABLE): { values: Record<string, string>; warnings: string[] } {
  const extension = extname(file).toLowerCase();
  if (!['.yaml', '.yml', '.json'].includes(extension)) {
    throw new ConfigError(`${namedBy}: ${file}: a config file ends in .yaml, .yml (YAML) or .json (JSON)`);
  }
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`${namedBy}: cannot read the config file ${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'there is no such file' : (err as Error).message}`);
  }
  const entries = extension === '.json' ? jsonEntries(file, text) : yamlEntries(file, text);

  const values: Record<string, string> = {};
  for (const { key, value, where } of entries) {
    if (key === CONFIG_FILE_VARIABLE) throw new ConfigError(`${where}: ${CONFIG_FILE_VARIABLE} names the config file, so it cannot be set inside one`);
    const setting = settingNamed(key);
    if (!setting) throw new ConfigError(`${where}: unknown setting "${key}"${suggestion(key)}`);
    values[key] = textOf(setting, value, where);
  }
  return { values, warnings: exposedSecrets(file, values) };
}

interface Entry {
  key: string;
  value: unknown;
  /** `file:line` (YAML) or `file` (JSON), for messages. */
  where: string;
}

function yamlEntries(file: string, text: string): Entry[] {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: true, uniqueKeys: true });
  const error = doc.errors[0];
  if (error) {
    const at = error.linePos?.[0];
    const message = error.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '');
    throw new ConfigError(`${file}${at ? `:${at.line}:${at.col}` : ''}: not valid YAML: ${message}`);
  }
  // Empty, or only comments (as `bellhop config init` writes it): no settings.
  if (doc.contents === null) return [];
  if (!isMap(doc.contents)) throw new ConfigError(`${file}: a config file is a mapping of settings (PORT: 3000), not a ${isScalar(doc.contents) ? 'single value' : 'list'}`);
  const all = doc.toJS({ maxAliasCount: 50 }) as Record<string, unknown>;
  return doc.contents.items.map((pair) => {
    const key = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
    const offset = isScalar(pair.key) && pair.key.range ? pair.key.range[0] : undefined;
    return { key, value: all[key], where: offset === undefined ? file : `${file}:${lineCounter.linePos(offset).line}` };
  });
}

function jsonEntries(file: string, text: string): Entry[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    const message = (err as Error).message;
    const position = /at position (\d+)/.exec(message);
    let at = '';
    if (position) {
      const before = text.slice(0, Number(position[1]));
      const line = before.split('\n').length;
      at = `:${line}:${before.length - before.lastIndexOf('\n')}`;
    }
    throw new ConfigError(`${file}${at}: not valid JSON: ${message.replace(/ in JSON at position \d+.*$/, '')}`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new ConfigError(`${file}: a config file is an object of settings ({"PORT": 3000})`);
  }
  return Object.entries(parsed).map(([key, value]) => ({ key, value, where: file }));
}

const EXPECTED: Record<Setting['type'], string> = {
  string: 'text',
  integer: 'a whole number',
  boolean: 'true or false',
  duration: 'a duration such as "30s" (or a number of milliseconds)',
  durations: 'durations such as "1m,5m,30m" (or a list of them)',
  list: 'text, comma-separated, or a list of text',
  rate: 'text such as "600/1m"',
  enum: 'one of',
  'trust-proxy': 'false, a number of proxy hops, or addresses and ranges (text or a list)',
};

function kindOf(value: unknown): string {
  if (value === null || value === undefined) return 'nothing';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string') return `the text ${JSON.stringify(value)}`;
  return `${typeof value === 'number' ? 'the number' : 'the boolean'} ${String(value)}`;
}

const isText = (value: unknown): value is string => typeof value === 'string';
const isDuration = (value: unknown): value is string | number => isText(value) || (typeof value === 'number' && Number.isFinite(value) && value >= 0);

/** A file value as the environment would spell it, or a ConfigError naming the key and what it must be. */
function textOf(setting: Setting, value: unknown, where: string): string {
  const ok = (() => {
    switch (setting.type) {
      case 'string':
      case 'rate':
        return isText(value) ? value : undefined;
      case 'enum':
        return isText(value) && setting.values!.includes(value) ? value : undefined;
      case 'integer':
        return Number.isInteger(value) ? String(value) : undefined;
      case 'boolean':
        return typeof value === 'boolean' ? String(value) : undefined;
      case 'duration':
        return isDuration(value) ? String(value) : undefined;
      case 'durations':
        if (isDuration(value)) return String(value);
        return Array.isArray(value) && value.every(isDuration) ? value.join(',') : undefined;
      case 'list':
        if (isText(value)) return value;
        return Array.isArray(value) && value.every(isText) ? value.join(',') : undefined;
      case 'trust-proxy':
        if (value === false) return 'false';
        if (Number.isInteger(value) || isText(value)) return String(value);
        return Array.isArray(value) && value.every(isText) ? value.join(',') : undefined;
    }
  })();
  if (ok !== undefined) return ok;
  const expected = setting.type === 'enum' ? `one of ${setting.values!.join(', ')}` : EXPECTED[setting.type];
  const hint = setting.type === 'boolean' && isText(value) ? ' (write true or false, without quotes)' : setting.type === 'integer' && isText(value) ? ' (write the number without quotes)' : '';
  throw new ConfigError(`${where}: ${setting.name} must be ${expected}, got ${kindOf(value)}${hint}`);
}

/** ` (did you mean PORT?)`, when a known setting is near: another spelling of it, or a typo or two away. */
function suggestion(key: string): string {
  const spelled = key
    .trim()
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .replace(/[-.\s]+/g, '_')
    .toUpperCase();
  if (settingNamed(spelled)) return ` (keys are the environment variable names: did you mean ${spelled}?)`;
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const { name } of SETTINGS) {
    const distance = editDistance(spelled, name);
    if (distance < bestDistance) [best, bestDistance] = [name, distance];
  }
  return best !== undefined && bestDistance <= Math.max(2, Math.floor(best.length / 5)) ? ` (did you mean ${best}?)` : ' (keys are the environment variable names listed by `bellhop config init`)';
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length];
}

/** A warning when the file holds a secret and every user of the machine may read it. */
function exposedSecrets(file: string, values: Record<string, string>): string[] {
  const held = SETTINGS.filter(({ name, mask }) => values[name] && (mask === 'secret' || (mask === 'url' && hasPassword(values[name])))).map(({ name }) => name);
  if (held.length === 0) return [];
  let mode: number;
  try {
    mode = statSync(file).mode;
  } catch {
    return [];
  }
  return mode & 0o004 ? [`WARNING: ${file} holds ${held.join(', ')} and every user of this machine can read it: chmod 600 it (or 640 with the service's group)`] : [];
}

// ---- What the boot log shows ----

/**
 * Query parameters that hold a credential: libpq's `password` and `sslpassword`, and any other
 * driver's `*password*`, `*secret*` or `*token*` (`auth_token`, `client_secret`).
 */
const SECRET_PARAMETER = /password|secret|token/i;

function secretParameters(parsed: URL): string[] {
  return [...new Set([...parsed.searchParams.keys()].filter((name) => SECRET_PARAMETER.test(name)))];
}

function hasPassword(url: string): boolean {
  try {
    const parsed = new URL(url);
    return parsed.password !== '' || secretParameters(parsed).length > 0;
  } catch {
    return false;
  }
}

/** A URL with its password (in the user info or a credential parameter) masked; unparseable text is not shown at all. */
export function maskUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return '[redacted: not a URL]';
  }
  if (parsed.password) parsed.password = '***';
  for (const name of secretParameters(parsed)) parsed.searchParams.set(name, '***');
  return parsed.toString();
}

/**
 * Every setting with its value and where it came from, for the boot log: `"3100 (flag)"`,
 * `"7d (default)"`, `"55 (default: WORKER_CONCURRENCY + 5, at least 10)"` (the value from
 * `config`, when given). Secrets are never shown, only whether they are set; URLs lose their password.
 */
export function settingsSummary(resolved: ResolvedSettings, config?: BellhopConfig): Record<string, string> {
  const summary: Record<string, string> = {};
  for (const setting of SETTINGS) {
    const source = resolved.sources[setting.name] ?? 'default';
    if (source === 'default') {
      if (setting.mask === 'secret') summary[setting.name] = '(not set)';
      else if (setting.default === '') summary[setting.name] = '(empty) (default)';
      else if (setting.default !== undefined) summary[setting.name] = `${String(setting.default)} (default)`;
      else {
        const value = config && setting.field ? `${String(config[setting.field])} ` : '';
        summary[setting.name] = `${value}(default: ${setting.defaultText ?? 'none'})`;
      }
      continue;
    }
    const raw = resolved.env[setting.name] ?? '';
    const shown = setting.mask === 'secret' ? '[redacted]' : setting.mask === 'url' ? maskUrl(raw) : raw;
    summary[setting.name] = `${shown} (${source})`;
  }
  return summary;
}

/**
 * loadConfig's message, with where the settings it names were given when that was not the
 * environment: an operator looks in the file or at the command line, not in their shell.
 */
export function explainConfigError(message: string, resolved: ResolvedSettings | undefined): string {
  if (!resolved) return message;
  const origins: string[] = [];
  for (const { name } of SETTINGS) {
    if (!new RegExp(`\\b${name}\\b`).test(message)) continue;
    if (resolved.sources[name] === 'file') origins.push(`${name} is set in ${resolved.file}`);
    if (resolved.sources[name] === 'flag') origins.push(`${name} is the flag --${flagName(name)}`);
  }
  return origins.length ? `${message} (${origins.join('; ')})` : message;
}
