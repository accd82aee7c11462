import { envelopeOf } from './envelope';
import { checkTemplate, renderBody, renderTemplate, summaryOf } from './formats';
import { checkCustomSchema } from './payload-validation';
import { validateInSandbox } from './schema-sandbox';

const envelope = envelopeOf({
  event: 'baseline.drift_detected',
  timestamp: new Date('2026-01-15T10:30:00.000Z'),
  project: { id: 'proj_1', name: 'my-mcp-server' },
  data: { fromVersion: 11, toVersion: 12, severity: 'breaking', changes: { toolsAdded: ['a'], toolsRemoved: [], toolsModified: ['b'], breakingCount: 1, warningCount: 2 }, note: null },
});

describe('webhook formats', () => {
  it('renders placeholders as values or as text, never splicing text into JSON', () => {
    const body = renderTemplate(
      { whole: '{{data.toVersion}}', text: 'v{{data.toVersion}} "{{event}}"', obj: 'x {{data.changes.toolsAdded}}', none: '{{data.missing}}', empty: '[{{data.missing}}]', nul: '{{data.note}}', key: { '{{event}}': 1 } },
      envelope,
    );
    expect(JSON.parse(body)).toEqual({ whole: 12, text: 'v12 "baseline.drift_detected"', obj: 'x ["a"]', none: null, empty: '[]', nul: null, key: { '{{event}}': 1 } });
  });

  it('keeps a key named __proto__ as an ordinary key', () => {
    const template = JSON.parse('{"__proto__": "{{event}}", "a": 1}') as object;
    expect(JSON.parse(renderTemplate(template, envelope))).toEqual(JSON.parse('{"__proto__": "baseline.drift_detected", "a": 1}'));
  });

  it('does not walk into inherited properties of the envelope', () => {
    expect(JSON.parse(renderTemplate({ a: '{{data.constructor}}', b: '{{event.length}}' }, envelope))).toEqual({ a: null, b: null });
  });

  it('bounds what placeholders insert into one body', () => {
    const big = envelopeOf({ event: 'x.y', timestamp: new Date(0), project: { id: 'p', name: 'n' }, data: { blob: 'b'.repeat(100 * 1024) } });
    const body = renderTemplate({ a: '{{data.blob}}', b: '{{data.blob}}', c: '{{data}}', d: 'x{{data.blob}}y', e: '{{event}}' }, big);
    expect(body.length).toBeLessThan(256 * 1024 + 1000);
    expect(JSON.parse(body)).toEqual({ a: 'b'.repeat(100 * 1024), b: 'b'.repeat(100 * 1024), c: null, d: 'xy', e: null });
  });

  it('keeps summaries on one line', () => {
    expect(summaryOf({ ...envelope, project: { id: 'p', name: 'two\nlines\r\n here' }, event: 'x.y' })).toBe('[two lines here] x.y');
  });

  it('keeps text from a payload from pinging a whole Discord channel', () => {
    expect(renderBody('discord', null, { ...envelope, project: { id: 'p', name: '@everyone' }, event: 'x.y' })).toBe(JSON.stringify({ content: '[@\u200beveryone] x.y' }));
  });

  it('checks templates: an object, placeholders under the envelope, bounded', () => {
    expect(checkTemplate({ a: '{{event}}' })).toBeNull();
    expect(checkTemplate('x')).toMatch(/JSON object/);
    expect(checkTemplate({ a: '{{secret}}' })).toMatch(/must start with/);
    expect(checkTemplate({ a: '{{data.x}}'.repeat(65) })).toMatch(/at most 64 placeholders/);
  });

  it('writes summaries; slack escapes its markup characters', () => {
    expect(summaryOf(envelope)).toBe('[my-mcp-server] Drift detected (breaking): v11 → v12, 1 added, 1 modified');
    expect(summaryOf({ ...envelope, event: 'deploy.finished' })).toBe('[my-mcp-server] deploy.finished');
    expect(renderBody('slack', null, { ...envelope, project: { id: 'p', name: '<!channel> & co' }, event: 'x.y' })).toBe('{"text":"[&lt;!channel&gt; &amp; co] x.y"}');
    expect(renderBody('bellwether', null, envelope)).toBeNull();
  });
});

describe("projects' own schemas, in the sandbox", () => {
  const key = (name: string) => `p\n${name}\n1`;
  const load = (schema: object) => () => Promise.resolve(schema);

  it('accepts draft 2020-12 schemas and refuses invalid ones, remote references and non-RE2 patterns', async () => {
    expect(await checkCustomSchema({ type: 'object', properties: { a: { type: 'string', pattern: '^[a-z]+$' } } })).toBeNull();
    expect(await checkCustomSchema({ type: 'wrong' })).toMatch(/not a valid JSON Schema/);
    expect(await checkCustomSchema({ $ref: 'https://example.com/s.json' })).toMatch(/does not compile/);
    expect(await checkCustomSchema({ properties: { a: { pattern: '(?<=x)y' } } })).toMatch(/does not compile/);
    expect(await checkCustomSchema({ description: 'a\u0000b' })).toMatch(/NUL/);
    expect(await checkCustomSchema([])).toMatch(/object/);
  });

  it('runs patterns in linear time: a catastrophic pattern for backtracking engines answers at once', async () => {
    const schema = { type: 'object', properties: { a: { type: 'string', pattern: '^(a+)+$' } } };
    const started = Date.now();
    expect(await validateInSandbox(key('redos'), { a: `${'a'.repeat(5000)}!` }, load(schema))).toEqual([{ path: '/a', message: expect.stringContaining('pattern') }]);
    expect(Date.now() - started).toBeLessThan(900);
  });

  it("does not let one schema's $id collide with another's", async () => {
    expect(await validateInSandbox('p1\nt.a\n1', { a: 1 }, load({ $id: 'https://x/s', type: 'object', required: ['a'] }))).toEqual([]);
    expect(await validateInSandbox('p2\nt.a\n1', { a: 1 }, load({ $id: 'https://x/s', type: 'object', required: ['b'] }))).toEqual([{ path: '/b', message: 'is required' }]);
  });

  it('answers a schema that blows the stack or takes too long with a problem, and keeps working after', async () => {
    expect(await validateInSandbox(key('self'), { a: 1 }, load({ $ref: '#' }))).toEqual([{ path: '', message: expect.stringContaining('could not be evaluated') }]);
    // Branches that double at each of 24 levels: 16 million paths for a value that matches none.
    // (In the API's own thread this would hold every request up for minutes.)
    const $defs: Record<string, object> = { a24: { type: 'string' } };
    for (let i = 0; i < 24; i += 1) $defs[`a${i}`] = { anyOf: [{ $ref: `#/$defs/a${i + 1}` }, { $ref: `#/$defs/a${i + 1}` }] };
    const started = Date.now();
    const slow = await validateInSandbox(key('exponential'), { x: 1 }, load({ $defs, properties: { x: { $ref: '#/$defs/a0' } } }));
    // Its time runs out, or its error list outgrows the thread's heap first: either way its own request fails.
    expect(slow).toEqual([{ path: '', message: expect.stringMatching(/took longer than 1 s|needed too much memory/) }]);
    expect(Date.now() - started).toBeLessThan(5_000);
    // A fresh thread takes the next request.
    expect(await validateInSandbox(key('after'), {}, load({ type: 'object', required: ['z'] }))).toEqual([{ path: '/z', message: 'is required' }]);
  }, 20_000);

  it('refuses a schema whose compilation would need too much time or memory', async () => {
    const schema = { $defs: { l: { type: 'object', properties: Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`p${i}`, { type: 'string', minLength: 1 }])) } }, allOf: Array.from({ length: 400 }, () => ({ $ref: '#/$defs/l' })) };
    const problem = await checkCustomSchema(schema);
    // With references kept as calls, it compiles small; if it did not, the limits would refuse it.
    expect(problem === null || /too complex/.test(problem)).toBe(true);
  }, 20_000);
});
