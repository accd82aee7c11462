import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ExitCode } from './exit-codes';
import { chunks, collectHeader, parseDuration, parseNdjson, parseTime, readJsonArgument } from './input';

describe('parseNdjson', () => {
  it('reads one event per line, skipping blank lines and keeping the line numbers', () => {
    const text = '{"event":"a.b","data":{}}\n\n{"event":"a.c","data":{"x":1},"idempotencyKey":"k"}\n';
    expect(parseNdjson(text)).toEqual([
      { line: 1, item: { event: 'a.b', data: {} } },
      { line: 3, item: { event: 'a.c', data: { x: 1 }, idempotencyKey: 'k' } },
    ]);
  });

  it('refuses the whole file, naming the line, before anything is sent', () => {
    expect(() => parseNdjson('{"event":"a.b","data":{}}\n{"event":')).toThrow(/^line 2: not valid JSON/);
    expect(() => parseNdjson('{"data":{}}')).toThrow(/^line 1: expected an object/);
    expect(() => parseNdjson('{"event":"a.b","data":{},"idempotencyKey":5}')).toThrow(/^line 1: idempotencyKey/);
    try {
      parseNdjson('[]');
    } catch (err) {
      expect((err as { exitCode: number }).exitCode).toBe(ExitCode.usage);
    }
  });
});

describe('chunks', () => {
  it('cuts into batches of the given size, the last one shorter', () => {
    expect(chunks([...Array(250).keys()], 100).map((c) => c.length)).toEqual([100, 100, 50]);
  });
});

describe('parseTime', () => {
  const now = new Date('2026-01-15T10:30:00.000Z');

  it('takes a duration as that long before now', () => {
    expect(parseTime('2h', '--from', now)).toBe('2026-01-15T08:30:00.000Z');
    expect(parseTime('90m', '--from', now)).toBe('2026-01-15T09:00:00.000Z');
    expect(parseTime('7d', '--from', now)).toBe('2026-01-08T10:30:00.000Z');
  });

  it('normalises an ISO time to UTC with milliseconds', () => {
    expect(parseTime('2026-01-15T12:00:00+02:00', '--from', now)).toBe('2026-01-15T10:00:00.000Z');
  });

  it('refuses anything else as a usage error', () => {
    expect(() => parseTime('yesterday', '--from', now)).toThrow(/--from must be an ISO time/);
    expect(() => parseTime('12', '--from', now)).toThrow(/--from must be/);
  });
});

describe('parseDuration', () => {
  it('reads the units of the settings', () => {
    expect([parseDuration('250ms'), parseDuration('30s'), parseDuration('5m'), parseDuration('2h'), parseDuration('1d')]).toEqual([250, 30_000, 300_000, 7_200_000, 86_400_000]);
    expect(parseDuration('5 minutes')).toBeNull();
  });
});

describe('readJsonArgument', () => {
  let dir: string;
  beforeAll(() => (dir = mkdtempSync(join(tmpdir(), 'bellhop-input-'))));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('reads inline JSON, or a file after @', () => {
    expect(readJsonArgument('{"a":1}', '--data')).toEqual({ a: 1 });
    const path = join(dir, 'data.json');
    writeFileSync(path, '{"b":[2]}');
    expect(readJsonArgument(`@${path}`, '--data')).toEqual({ b: [2] });
  });

  it('says which argument is wrong', () => {
    expect(() => readJsonArgument('{nope', '--data')).toThrow(/^--data is not valid JSON/);
    expect(() => readJsonArgument(`@${join(dir, 'missing.json')}`, '--data')).toThrow(/Cannot read --data from .*ENOENT/);
  });
});

describe('collectHeader', () => {
  it('collects repeated Name: value pairs', () => {
    expect(collectHeader('X-Env: prod', collectHeader('Authorization: Bearer abc:def'))).toEqual({ Authorization: 'Bearer abc:def', 'X-Env': 'prod' });
    expect(() => collectHeader('novalue')).toThrow(/--header must be/);
  });
});
