import { checkCustomSchema, isLinearSchema, linearValidator } from './payload-validation';
import { SANDBOX_LIMITS, SandboxFailure, validateInSandbox } from './schema-sandbox';

/** Branches that double at each of `levels` levels: 2^levels paths for a value that matches none. */
function exponential(levels: number): object {
  const $defs: Record<string, object> = { [`a${levels}`]: { type: 'string' } };
  for (let i = 0; i < levels; i += 1) $defs[`a${i}`] = { anyOf: [{ $ref: `#/$defs/a${i + 1}` }, { $ref: `#/$defs/a${i + 1}` }] };
  return { $defs, properties: { x: { $ref: '#/$defs/a0' } } };
}

describe("projects' own schemas checked in the API's thread", () => {
  it('are only small schemas of keywords whose cost is linear in the payload', () => {
    expect(isLinearSchema({ type: 'object', properties: { a: { type: 'string', maxLength: 5 }, b: { type: 'array', items: { enum: ['x', 'y'] } } }, required: ['a'] })).toBe(true);
    for (const schema of [
      { properties: { a: { pattern: '^a' } } },
      { anyOf: [{ type: 'string' }] },
      { $ref: '#/$defs/a', $defs: { a: {} } },
      { items: { uniqueItems: true } },
      { properties: { a: { format: 'email' } } },
      { enum: Array.from({ length: 17 }, (_, i) => i) },
      { items: { required: Array.from({ length: 17 }, (_, i) => `k${i}`) } },
      { items: { properties: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, { type: 'string' }])) } },
      JSON.parse(`${'{"items":'.repeat(10)}{}${'}'.repeat(10)}`) as object,
      { const: { a: 1 } },
      { type: 'object', description: 'x'.repeat(5000) },
    ]) {
      expect({ schema: JSON.stringify(schema).slice(0, 60), linear: isLinearSchema(schema) }).toEqual({ schema: JSON.stringify(schema).slice(0, 60), linear: false });
    }
    const validate = linearValidator('p\nlinear\n1', { type: 'object', required: ['constructor'] })!;
    expect(validate({})).toEqual([{ path: '/constructor', message: 'is required' }]);
    expect(linearValidator('p\nnot-linear\n1', { anyOf: [{ type: 'string' }] })).toBeUndefined();
  });
});

describe("projects' own schemas, in the sandbox", () => {
  const load = (schema: object) => () => Promise.resolve(schema);
  const one = async (org: string, key: string, data: unknown, schema: object) => (await validateInSandbox(org, key, [data], load(schema)))[0];

  it('accepts draft 2020-12 schemas and refuses invalid ones, remote references, non-RE2 patterns, NUL and __proto__', async () => {
    expect(await checkCustomSchema('o', { type: 'object', properties: { a: { type: 'string', pattern: '^[a-z]+$' } } })).toBeNull();
    expect(await checkCustomSchema('o', { type: 'wrong' })).toMatch(/not a valid JSON Schema/);
    expect(await checkCustomSchema('o', { $ref: 'https://example.com/s.json' })).toMatch(/does not compile/);
    expect(await checkCustomSchema('o', { properties: { a: { pattern: '(?<=x)y' } } })).toMatch(/does not compile/);
    expect(await checkCustomSchema('o', { description: 'a\u0000b' })).toMatch(/NUL/);
    // A backslash and "u0000" as text is not a NUL.
    expect(await checkCustomSchema('o', { description: 'a\\u0000b' })).toBeNull();
    expect(await checkCustomSchema('o', JSON.parse('{"properties": {"__proto__": {"type": "string"}}}') as object)).toMatch(/__proto__/);
    expect(await checkCustomSchema('o', [])).toMatch(/object/);
  });

  it('runs patterns in linear time: a catastrophic pattern for backtracking engines answers at once', async () => {
    const started = Date.now();
    expect(await one('o', 'p\nredos\n1', { a: `${'a'.repeat(5000)}!` }, { type: 'object', properties: { a: { type: 'string', pattern: '^(a+)+$' } } })).toEqual([
      { path: '/a', message: expect.stringContaining('pattern') },
    ]);
    expect(Date.now() - started).toBeLessThan(900);
  });

  it("does not let one schema's $id collide with another's", async () => {
    expect(await one('o1', 'p1\nt.a\n1', { a: 1 }, { $id: 'https://x/s', type: 'object', required: ['a'] })).toEqual([]);
    expect(await one('o2', 'p2\nt.a\n1', { a: 1 }, { $id: 'https://x/s', type: 'object', required: ['b'] })).toEqual([{ path: '/b', message: 'is required' }]);
  });

  it('checks all payloads of one request in one go, each with its own problems', async () => {
    const found = await validateInSandbox('o', 'p\nmany\n1', [{ a: 1 }, {}, { a: 'x' }], load({ type: 'object', required: ['a'], properties: { a: { type: 'integer' } } }));
    expect(found).toEqual([[], [{ path: '/a', message: 'is required' }], [{ path: '/a', message: 'must be integer' }]]);
  });

  it('answers a schema that blows the stack or takes too long with a problem, and keeps working after', async () => {
    expect(await one('o', 'p\nself\n1', { a: 1 }, { $ref: '#' })).toEqual([{ path: '', message: expect.stringContaining('could not be evaluated') }]);
    const started = Date.now();
    // Its time runs out, or its error list outgrows the thread's heap first: either way only its own request fails.
    expect(await one('o', 'p\nexponential\n1', { x: 1 }, exponential(24))).toEqual([{ path: '', message: expect.stringMatching(/took longer than 1 s|ended its sandbox/) }]);
    expect(Date.now() - started).toBeLessThan(6_000);
    expect(await one('o', 'p\nafter\n1', {}, { type: 'object', required: ['z'] })).toEqual([{ path: '/z', message: 'is required' }]);
  }, 20_000);

  it("keeps one tenant's costly schemas from holding up another tenant's checks", async () => {
    const costly = Array.from({ length: 3 }, (_, i) => one('greedy', `p\ncostly${i}\n1`, { x: 1 }, exponential(24)));
    await new Promise((resolve) => setTimeout(resolve, 50));
    const started = Date.now();
    expect(await one('polite', 'p\ncheap\n1', {}, { type: 'object', required: ['z'] })).toEqual([{ path: '/z', message: 'is required' }]);
    // A free thread at once (the greedy tenant runs on one at most), or at worst after one deadline.
    expect(Date.now() - started).toBeLessThan(SANDBOX_LIMITS.validateMs + SANDBOX_LIMITS.compileMs);
    await Promise.all(costly);
  }, 30_000);

  it('refuses (busy) what one organization queues beyond its share, and serves it again after', async () => {
    const queued = Array.from({ length: SANDBOX_LIMITS.queuedPerOrganization + 5 }, (_, i) =>
      validateInSandbox('flood', `p\nflood${i}\n1`, [{}], load({ type: 'object' })).then(
        () => 'ok',
        (error: unknown) => (error instanceof SandboxFailure ? error.reason : 'other'),
      ),
    );
    const outcomes = await Promise.all(queued);
    expect(outcomes.filter((o) => o === 'busy').length).toBeGreaterThan(0);
    expect(outcomes.filter((o) => o !== 'busy' && o !== 'ok')).toEqual([]);
    expect(await one('flood', 'p\nflood-after\n1', {}, { type: 'object' })).toEqual([]);
  }, 30_000);

  it('compiles distinct large schemas one after another and keeps answering (each compiled apart, the cache bounded by size)', async () => {
    const big = (n: number) => ({ type: 'object', properties: Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`field${n}_${i}`, { type: 'string', maxLength: 100 + i }])) });
    for (let n = 0; n < 16; n += 1) {
      expect(await checkCustomSchema('o', big(n))).toBeNull();
      expect(await one('o', `p\nbig${n}\n1`, {}, big(n))).toEqual([]);
    }
  }, 60_000);
});
