import { randomBytes } from 'node:crypto';
import { Client } from 'pg';
import {
  describeAnswer,
  errorShapeProblem,
  fetchDocument,
  fillPath,
  Ids,
  Operation,
  operationsOf,
  OpenApiDocument,
  requestFor,
  sampleFromSchema,
  unknownParams,
} from './support/openapi-walk';
import { Stack, startStack } from './support/stack';
import { createWebhook, newTenant, Tenant } from './support/tenant';
import { documented } from './support/payloads';

const EVENT_TYPES = ['baseline.uploaded', 'baseline.drift_detected', 'baseline.security_finding'];
/**
 * Fixed by default so that CI runs are repeatable; set FUZZ_SEED to explore other random bodies.
 * Printed with every finding, so that a failing run can be replayed.
 */
const SEED = Number(process.env.FUZZ_SEED ?? 20261123);

/** mulberry32: small, fast and deterministic for a seed. */
function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)];
  return { next, int, pick };
}
type Rng = ReturnType<typeof prng>;

const ODD_STRINGS = [
  '',
  ' ',
  '\t\n',
  'a',
  'null',
  'undefined',
  'true',
  '0',
  '-1',
  '1e309',
  'NaN',
  '[]',
  '{}',
  '__proto__',
  'constructor',
  'prototype',
  '💥🔥👩‍👩‍👧‍👦',
  'Ωmega ünïcödé 中文 العربية',
  '\u202eevil\u202c',
  '\u0000',
  'nul\u0000inside',
  '\ud800',
  '\udfff\ud800',
  '\uffff\ufffe',
  "'; DROP TABLE projects; --",
  '<script>alert(1)</script>',
  '../../../../etc/passwd',
  '%00%ff',
  '${jndi:ldap://127.0.0.1/x}',
  'https://example.com/hook',
  'http://127.0.0.1/hook',
  'https://user:pass@example.com/hook',
  'javascript:alert(1)',
  'ada@example.com',
  'owner',
  'admin',
  'member',
  'free',
  'team',
  ...EVENT_TYPES,
  'org_01JH3Y8ZK6Q2WQ4M7N8P9R0S1T',
  'proj_00000000000000000000000000',
];
const ODD_NUMBERS = [0, -0, 1, -1, 0.5, 2 ** 31, 2 ** 53, -(2 ** 63), 1e308, -1e-308, 123456789012345680000];
const ODD_KEYS = ['__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', 'valueOf', '', ' ', '💥', 'a.b', '$where', 'id', 'organizationId', 'role', 'plan'];

/** What kind of oddity a value is, to group findings by likely cause. */
function kindOfValue(value: unknown): string {
  if (value === null) return 'a field set to null';
  if (typeof value === 'string') {
    if (value.includes('\u0000')) return 'a NUL character';
    if (/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(value)) return 'an unpaired UTF-16 surrogate';
    if (value.length > 1000) return 'a huge string';
    return 'an odd string';
  }
  if (Array.isArray(value)) return 'an array where a scalar belongs';
  return `a ${typeof value} of the wrong kind`;
}

/** Every odd value, for the systematic pass that puts each one in each field once. */
const SYSTEMATIC_VALUES: unknown[] = [
  ...ODD_STRINGS,
  ...ODD_NUMBERS,
  null,
  true,
  false,
  [],
  ['x'],
  {},
  { a: 1 },
  'x'.repeat(5000),
  '💥'.repeat(3000),
];

/** Each field of the valid body set to each odd value in turn, the other fields left valid. */
function systematicBodies(valid: Record<string, unknown>): Body[] {
  const out: Body[] = [];
  for (const field of Object.keys(valid)) {
    for (const value of SYSTEMATIC_VALUES) out.push({ kind: kindOfValue(value), text: JSON.stringify({ ...valid, [field]: value }) });
  }
  return out;
}

/** A random JSON value as text, with own `__proto__` keys written literally (JSON.stringify cannot). */
function randomJson(rng: Rng, depth = 0): string {
  const r = rng.int(depth > 3 ? 6 : 10);
  switch (r) {
    case 0:
      return 'null';
    case 1:
      return rng.pick(['true', 'false']);
    case 2:
      return JSON.stringify(rng.pick(ODD_NUMBERS));
    case 3:
    case 4:
      return JSON.stringify(rng.pick(ODD_STRINGS));
    case 5:
      return JSON.stringify(rng.pick(['x', 'é', '💥', 'a\u0000']).repeat(rng.pick([255, 256, 501, 2049, 10_000, 100_000])));
    case 6:
    case 7: {
      const n = rng.int(4);
      return `[${Array.from({ length: n }, () => randomJson(rng, depth + 1)).join(',')}]`;
    }
    default: {
      const n = rng.int(4);
      const keys = Array.from({ length: n }, () => (rng.next() < 0.5 ? rng.pick(ODD_KEYS) : `k${rng.int(100)}`));
      return `{${keys.map((k) => `${JSON.stringify(k)}:${randomJson(rng, depth + 1)}`).join(',')}}`;
    }
  }
}

interface Body {
  /** What kind of oddity the body holds, to group findings by likely cause. */
  kind: string;
  text: string;
}

/** Replaces, removes or adds fields of a valid body; the result is JSON text. */
function mutate(rng: Rng, valid: Record<string, unknown>): Body {
  const [kind, text] = mutateText(rng, valid);
  return { kind, text };
}

function mutateText(rng: Rng, valid: Record<string, unknown>): [string, string] {
  const fields = Object.keys(valid);
  const entries = fields.map((k) => `${JSON.stringify(k)}:${JSON.stringify(valid[k])}`);
  const op = rng.int(9);
  const at = rng.int(Math.max(1, entries.length));
  const obj = (kind: string): [string, string] => [kind, `{${entries.join(',')}}`];
  switch (op) {
    case 0: {
      // one field of a wrong or odd value
      if (!fields.length) return obj('valid body');
      const value = randomJson(rng);
      entries[at] = `${JSON.stringify(fields[at])}:${value}`;
      return obj(value === 'null' ? 'a field set to null' : value.includes('\\u0000') ? 'a NUL character' : 'a field of a wrong or odd value');
    }
    case 1: // one field missing
      entries.splice(at, 1);
      return obj('a field missing');
    case 2: // an unknown or dangerous extra key
      entries.push(`${JSON.stringify(rng.pick(ODD_KEYS))}:${randomJson(rng)}`);
      return obj('an unknown extra key');
    case 3: // everything null
      return ['every field null', `{${fields.map((k) => `${JSON.stringify(k)}:null`).join(',')}}`];
    case 4: // numbers and booleans as strings, strings as numbers
      return [
        'types swapped',
        `{${fields
          .map((k) => {
            const v = valid[k];
            const odd = typeof v === 'string' ? rng.pick(['1', '0', 'true', '[]']) : JSON.stringify(String(JSON.stringify(v)));
            return `${JSON.stringify(k)}:${odd}`;
          })
          .join(',')}}`,
      ];
    case 5: // the valid body wrapped
      return ['the valid body wrapped', rng.pick([`[${JSON.stringify(valid)}]`, `{"body":${JSON.stringify(valid)}}`, `{"data":${JSON.stringify(valid)}}`])];
    case 6: // prototype pollution attempts beside valid fields
      entries.push(rng.pick(['"__proto__":{"polluted":"yes"}', '"constructor":{"prototype":{"polluted":"yes"}}', '"__proto__":{"role":"owner","isAdmin":true}']));
      return obj('prototype pollution keys');
    case 7: // a field duplicated with another value: JSON.parse keeps the last
      if (fields.length) entries.push(`${JSON.stringify(fields[at])}:${randomJson(rng)}`);
      return obj('a field duplicated');
    default: {
      // a string field stretched or made odd
      if (fields.length && typeof valid[fields[at]] === 'string') {
        const choice = rng.int(3);
        const v = String(valid[fields[at]]);
        const odd = choice === 0 ? v.repeat(300) : choice === 1 ? `${v}\u0000` : rng.pick(ODD_STRINGS);
        entries[at] = `${JSON.stringify(fields[at])}:${JSON.stringify(odd)}`;
        return obj(odd.includes('\u0000') ? 'a NUL character' : choice === 0 ? 'a huge string' : 'an odd string');
      }
      entries.push(`"extra":${randomJson(rng)}`);
      return obj('an unknown extra key');
    }
  }
}

/** Deep nesting and other shapes that stress parsers and transformers. */
function extremeBodies(valid: Record<string, unknown>): Body[] {
  const merged = (extra: string) => {
    const inner = JSON.stringify(valid).slice(1, -1);
    return `{${inner}${inner ? ',' : ''}${extra}}`;
  };
  return [
    { kind: 'an empty object', text: '{}' },
    { kind: 'an array', text: '[]' },
    { kind: 'a string', text: '"just a string"' },
    { kind: 'a number', text: '42' },
    { kind: 'nested 100 deep', text: deepObject(100) },
    { kind: 'nested 5000 deep', text: deepObject(5000) },
    { kind: 'arrays nested 5000 deep', text: `${'['.repeat(5000)}${']'.repeat(5000)}` },
    { kind: 'a valid body with an extra field nested 3000 deep', text: merged(`"nested":${deepObject(3000)}`) },
    { kind: 'prototype pollution keys', text: merged('"__proto__":{"polluted":"yes"}') },
    { kind: 'prototype pollution keys', text: merged('"constructor":{"prototype":{"polluted":"yes"}}') },
    { kind: '2000 keys', text: `{${Array.from({ length: 2000 }, (_, i) => `"k${i}":${i}`).join(',')}}` },
    { kind: 'a 900 kB string', text: merged(`"big":${JSON.stringify('x'.repeat(900_000))}`) },
    { kind: 'a 2 MB body', text: merged(`"big":${JSON.stringify('x'.repeat(2_000_000))}`) },
  ];
}

function deepObject(n: number): string {
  return `${'{"a":'.repeat(n)}1${'}'.repeat(n)}`;
}

/**
 * One query parameter as it goes on the wire. `raw` values are written as they are (malformed
 * percent escapes, a key without `=`); the others are percent-encoded byte by byte, so that a lone
 * UTF-16 surrogate goes out as the UTF-8 replacement character instead of making the client throw.
 */
interface QueryPair {
  key: string;
  value: string | null;
  raw?: boolean;
}

function percentEncode(text: string): string {
  return [...Buffer.from(text, 'utf8')].map((b) => (/[A-Za-z0-9_.~-]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`)).join('');
}

function queryString(pairs: QueryPair[]): string {
  return pairs.map((p) => (p.raw ? `${p.key}${p.value === null ? '' : `=${p.value}`}` : `${percentEncode(p.key)}=${percentEncode(p.value ?? '')}`)).join('&');
}

/** Odd values for any query parameter, whatever its type; each goes into each parameter once. */
const ODD_QUERY_VALUES: string[] = [
  '',
  ' ',
  '-1',
  '0',
  '1.5',
  ' 1',
  '0x10',
  '1e309',
  'NaN',
  '2147483648',
  '9007199254740993',
  '[object Object]',
  '\u0000',
  '\ud800',
  '2026-13-45T25:61:61Z',
  '0000-01-01T00:00:00.000Z',
  '-271821-04-20T00:00:00.000Z',
  '+275760-09-13T00:00:00.001Z',
  '2026-11-30',
  '1700000000000',
  "'; DROP TABLE deliveries; --",
  '%',
  'zzzz_ZZZZZZZZZZZZZZZZZZZZZZZZZZ',
  'aa_00000000000000000000000000',
  'x'.repeat(6000),
  '💥'.repeat(500),
];

/** Malformed escapes and shapes a query parser sees rarely, written raw; `{name}` is the parameter. */
const RAW_QUERY_FORMS: Array<[kind: string, form: (name: string) => string]> = [
  ['a bare key', (n) => n],
  ['a lone percent sign', (n) => `${n}=%`],
  ['a bad escape', (n) => `${n}=%zz`],
  ['truncated UTF-8', (n) => `${n}=%E2%82`],
  ['an encoded surrogate', (n) => `${n}=%ED%A0%80`],
  ['an overlong NUL', (n) => `${n}=%C0%80`],
  ['brackets (array syntax)', (n) => `${n}[]=1&${n}[]=2`],
  ['brackets (object syntax)', (n) => `${n}[a]=1`],
  ['prototype keys in brackets', (n) => `${n}[__proto__][polluted]=yes&${n}[constructor][prototype][polluted]=yes`],
];

/** Unknown or dangerous parameter names, sent beside the route's own. */
const ODD_QUERY_KEYS = ['__proto__', 'constructor', 'prototype', 'hasOwnProperty', 'toString', 'organizationId', 'orgId', 'projectId', 'limit[]', 'include', 'sort', 'where', '$where', '', '💥'];

/** Bodies that pass validation, so that mutations start from something the route would accept. */
function validBodies(tenant: Tenant, extra: { memberEmail: string }): Record<string, Record<string, unknown>> {
  return {
    'POST /auth/signup': { email: `fuzz-${randomBytes(6).toString('hex')}@example.com`, password: 'correct horse battery', name: 'Fuzz' },
    'POST /auth/login': { email: tenant.email, password: 'correct horse battery' },
    'POST /organizations': { name: 'Fuzz Co' },
    'PATCH /organizations/{orgId}': { name: 'Fuzz Co', plan: 'team' },
    'POST /organizations/{orgId}/members': { email: extra.memberEmail, role: 'member' },
    'PATCH /organizations/{orgId}/members/{userId}': { role: 'admin' },
    'POST /organizations/{orgId}/api-tokens': { name: 'ci', role: 'member' },
    'POST /projects': { name: 'fuzzed', organizationId: tenant.organizationId },
    'PATCH /projects/{projectId}': { name: 'renamed' },
    'POST /projects/{projectId}/webhooks': { url: 'https://hooks.example.com/fuzz', events: ['baseline.uploaded'], enabled: true, description: 'd' },
    'PATCH /webhooks/{webhookId}': { url: 'https://hooks.example.com/fuzz2', events: ['baseline.drift_detected'], enabled: true, description: 'e' },
    'POST /webhooks/{webhookId}/test': { event: 'baseline.uploaded' },
    'POST /webhooks/{webhookId}/replay': { from: new Date(Date.now() - 3_600_000).toISOString(), status: ['failed'], event: 'baseline.uploaded' },
    'POST /projects/{projectId}/events': { event: 'baseline.drift_detected', data: documented('baseline.drift_detected') },
    'POST /projects/{projectId}/event-types': { type: `fuzz.t${randomBytes(4).toString('hex')}`, description: 'd', category: 'fuzz', schema: { type: 'object' } },
    'PATCH /projects/{projectId}/event-types/{type}': { description: 'e', schema: { type: 'object', properties: { a: { type: 'string' } } } },
    'POST /projects/{projectId}/sources': { name: 'fuzzed/repo', type: 'github', secret: 'a-fuzzing-secret-0123456789' },
  };
}

/** How many random bodies each route gets beside the systematic ones: slow (password hashing) and destructive routes fewer. */
function randomBudgetFor(op: Operation): number {
  if (op.key === 'POST /auth/logout') return 8;
  if (op.key === 'POST /auth/signup' || op.key === 'POST /auth/login') return 30;
  if (op.method === 'delete') return 40;
  return 80;
}

/** What 2xx answers said was created, to compare with the database afterwards. */
interface Ledger {
  orgs: Set<string>;
  projects: Set<string>;
  webhooks: Set<string>;
  deletedWebhooks: Set<string>;
  /** event id -> deliveries the API said it fanned out to */
  events: Map<string, number>;
  tokens: Set<string>;
}

/** Runs `fn` over `items` with at most `n` in flight. */
async function inParallel<T>(items: readonly T[], n: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, items.length) }, async () => {
      while (next < items.length) await fn(items[next++]);
    }),
  );
}

/** Findings grouped by status and kind of body, naming the routes, so that a report stays readable. */
class Findings {
  private groups = new Map<string, { count: number; routes: Set<string>; example: string }>();
  add(group: string, route: string, example: string) {
    const g = this.groups.get(group) ?? { count: 0, routes: new Set<string>(), example };
    g.count++;
    g.routes.add(route);
    this.groups.set(group, g);
  }
  report(seed: number): string[] {
    return [...this.groups].map(
      ([group, g]) => `${group}: ${g.count}x on ${[...g.routes].join(', ')} (FUZZ_SEED=${seed}); e.g. ${g.example.length > 400 ? `${g.example.slice(0, 400)}...` : g.example}`,
    );
  }
}

async function signup(stack: Stack, name: string) {
  const email = `${name.toLowerCase()}-${randomBytes(6).toString('hex')}@example.com`;
  const res = await stack.http().post('/auth/signup').send({ email, password: 'correct horse battery', name }).expect(201);
  return { email, userId: res.body.user.id as string };
}

describe('fuzzing every route', () => {
  let stack: Stack;
  let doc: OpenApiDocument;
  let writeOps: Operation[];

  beforeAll(async () => {
    stack = await startStack({ worker: false, env: { RATE_LIMIT: '1000000/1m', AUTH_RATE_LIMIT: '1000000/1m' } });
    doc = await fetchDocument(stack);
    writeOps = operationsOf(doc).filter((op) => op.method !== 'get');
  });
  afterAll(() => stack?.stop());

  /**
   * A tenant with one of everything, plus spares for the routes that delete what they are given.
   * Every row is entered in the ledger as the API reports it.
   */
  async function fuzzTenant() {
    const tenant = await newTenant(stack, 'Fuzz');
    await stack.http().patch(`/organizations/${tenant.organizationId}`).set(tenant.auth).send({ plan: 'team' }).expect(200);
    const ledger: Ledger = { orgs: new Set([tenant.organizationId]), projects: new Set([tenant.projectId]), webhooks: new Set(), deletedWebhooks: new Set(), events: new Map(), tokens: new Set() };
    const { webhook } = await createWebhook(stack, tenant, 'https://hooks.example.com/fuzz', EVENT_TYPES);
    ledger.webhooks.add(webhook.id);
    const published = await stack.http().post(`/projects/${tenant.projectId}/events`).set(tenant.auth).send({ event: 'baseline.uploaded', data: documented('baseline.uploaded') }).expect(202);
    ledger.events.set(published.body.event.id, published.body.deliveries);
    const deliveries = await stack.http().get(`/webhooks/${webhook.id}/deliveries`).set(tenant.auth).expect(200);
    await stack.http().post(`/projects/${tenant.projectId}/event-types`).set(tenant.auth).send({ type: 'fuzz.thing' }).expect(201);
    const member = await signup(stack, 'Member');
    await stack.http().post(`/organizations/${tenant.organizationId}/members`).set(tenant.auth).send({ email: member.email, role: 'member' }).expect(201);
    const spareMember = await signup(stack, 'Spare');
    const replay = await stack.http().post(`/webhooks/${webhook.id}/replay`).set(tenant.auth).send({ from: new Date(Date.now() - 3_600_000).toISOString() }).expect(202);
    const source = await stack.http().post(`/projects/${tenant.projectId}/sources`).set(tenant.auth).send({ name: 'fuzz/repo', type: 'github' }).expect(201);

    const spares = {
      project: async () => {
        const res = await stack.http().post('/projects').set(tenant.auth).send({ name: 'spare', organizationId: tenant.organizationId }).expect(201);
        ledger.projects.add(res.body.project.id);
        return res.body.project.id as string;
      },
      eventType: async () => {
        const type = `fuzz.spare${randomBytes(4).toString('hex')}`;
        await stack.http().post(`/projects/${tenant.projectId}/event-types`).set(tenant.auth).send({ type }).expect(201);
        return type;
      },
      webhook: async () => {
        const res = await createWebhook(stack, tenant, 'https://hooks.example.com/spare');
        ledger.webhooks.add(res.webhook.id);
        return res.webhook.id;
      },
      source: async () => {
        const res = await stack.http().post(`/projects/${tenant.projectId}/sources`).set(tenant.auth).send({ name: 'spare', type: 'gitlab' }).expect(201);
        return res.body.source.id as string;
      },
      token: async () => {
        const res = await stack.http().post(`/organizations/${tenant.organizationId}/api-tokens`).set(tenant.auth).send({ name: 'spare', role: 'member' }).expect(201);
        ledger.tokens.add(res.body.apiToken.id);
        return res.body.apiToken.id as string;
      },
      member: async () => {
        const res = await stack.http().post(`/organizations/${tenant.organizationId}/members`).set(tenant.auth).send({ email: spareMember.email, role: 'member' });
        if (res.status !== 201 && res.status !== 409) throw new Error(describeAnswer('re-adding the spare member', res));
        return spareMember.userId;
      },
      session: async () => {
        const res = await stack.http().post('/auth/login').send({ email: tenant.email, password: 'correct horse battery' }).expect(200);
        return `Bearer ${res.body.session.token}`;
      },
    };
    const ids: Ids = {
      orgId: tenant.organizationId,
      projectId: tenant.projectId,
      webhookId: webhook.id,
      eventId: published.body.event.id,
      deliveryId: deliveries.body.deliveries[0].id,
      tokenId: '',
      userId: member.userId,
      type: 'fuzz.thing',
      replayId: replay.body.replay.id,
      sourceId: source.body.source.id,
    };
    return { tenant, ledger, ids, spares, memberEmail: member.email };
  }

  type Fuzz = Awaited<ReturnType<typeof fuzzTenant>>;

  type Spare = 'project' | 'webhook' | 'token' | 'member' | 'session' | 'eventType' | 'source';

  /**
   * The ids and credential a request of `op` uses. Routes that delete what they are given get a
   * spare, kept until a 2xx consumes it (`consume`), then replaced by a fresh one.
   */
  function targetsFor(f: Fuzz) {
    const current: Partial<Record<Spare, string>> = {};
    const spare = async (kind: Spare) => (current[kind] ??= await f.spares[kind]());
    return {
      async of(op: Operation): Promise<{ ids: Ids; auth: string; spares: Spare[] }> {
        const ids = { ...f.ids };
        const spares: Spare[] = [];
        let auth = f.tenant.auth.Authorization;
        if (op.key === 'DELETE /projects/{projectId}') {
          ids.projectId = await spare('project');
          spares.push('project');
        } else if (op.key === 'DELETE /webhooks/{webhookId}') {
          ids.webhookId = await spare('webhook');
          spares.push('webhook');
        } else if (op.key === 'DELETE /organizations/{orgId}/members/{userId}') {
          ids.userId = await spare('member');
          spares.push('member');
        } else if (op.key === 'DELETE /sources/{sourceId}') {
          ids.sourceId = await spare('source');
          spares.push('source');
        } else if (op.key === 'DELETE /projects/{projectId}/event-types/{type}') {
          ids.type = await spare('eventType');
          spares.push('eventType');
        } else if (op.key === 'POST /auth/logout') {
          auth = await spare('session');
          spares.push('session');
        }
        if (op.pathParams.includes('tokenId')) {
          ids.tokenId = await spare('token');
          spares.push('token');
        }
        return { ids, auth, spares };
      },
      consume(kinds: Spare[]) {
        for (const kind of kinds) delete current[kind];
      },
    };
  }

  /** Enters what a 2xx answer created or removed into the ledger. */
  function record(f: Fuzz, op: Operation, ids: Ids, res: { status: number; body: any }) {
    if (res.status < 200 || res.status > 299) return;
    const { ledger } = f;
    switch (op.key) {
      case 'POST /projects':
        ledger.projects.add(res.body.project.id);
        break;
      case 'DELETE /projects/{projectId}':
        ledger.projects.delete(ids.projectId);
        break;
      case 'POST /projects/{projectId}/webhooks':
        ledger.webhooks.add(res.body.webhook.id);
        break;
      case 'DELETE /webhooks/{webhookId}':
        ledger.webhooks.delete(ids.webhookId);
        ledger.deletedWebhooks.add(ids.webhookId);
        break;
      case 'POST /projects/{projectId}/events':
        if (res.status === 202) ledger.events.set(res.body.event.id, res.body.deliveries);
        break;
      case 'POST /webhooks/{webhookId}/test':
        ledger.events.set(res.body.delivery.eventId, 1);
        break;
      case 'POST /organizations':
        ledger.orgs.add(res.body.organization.id);
        break;
      case 'POST /organizations/{orgId}/api-tokens':
        ledger.tokens.add(res.body.apiToken.id);
        break;
      case 'DELETE /api-tokens/{tokenId}':
        ledger.tokens.delete(ids.tokenId);
        break;
    }
  }

  /** After a route's run, put back what it may have changed that later routes rely on. */
  async function restore(f: Fuzz, op: Operation) {
    if (op.key === 'PATCH /organizations/{orgId}') {
      await stack.http().patch(`/organizations/${f.tenant.organizationId}`).set(f.tenant.auth).send({ plan: 'team' }).expect(200);
    }
    if (op.key === 'PATCH /webhooks/{webhookId}') {
      await stack.http().patch(`/webhooks/${f.ids.webhookId}`).set(f.tenant.auth).send({ enabled: true, events: EVENT_TYPES }).expect(200);
    }
  }

  /** Checks one answer; returns a finding or null. */
  function check(label: string, res: { status: number; body: any; text: string; headers: Record<string, string> }): string | null {
    if (res.status >= 500) return describeAnswer(`${label}: 5xx`, res);
    if (res.status >= 400) {
      const problem = errorShapeProblem(res);
      if (problem) return `${describeAnswer(label, res)} :: ${problem}`;
    }
    if (!res.headers['x-request-id']) return `${label}: no X-Request-Id`;
    return null;
  }

  /** What in the database differs from what the 2xx answers said, or is half-written. */
  async function consistencyProblems(f: Fuzz): Promise<string[]> {
    const problems: string[] = [];
    const sameSet = (what: string, actual: Iterable<string>, expected: Set<string>) => {
      const a = new Set(actual);
      const extra = [...a].filter((id) => !expected.has(id));
      const missing = [...expected].filter((id) => !a.has(id));
      if (extra.length || missing.length) problems.push(`${what}: in the database but never answered 2xx: [${extra.join(', ')}]; answered 2xx but missing: [${missing.join(', ')}]`);
    };
    const db = new Client({ connectionString: stack.databaseUrl });
    await db.connect();
    try {
      const orgs = [...f.ledger.orgs];
      const projects = await db.query<{ id: string }>('SELECT id FROM projects WHERE organization_id = ANY($1)', [orgs]);
      sameSet('projects', projects.rows.map((r) => r.id), f.ledger.projects);

      const webhooks = await db.query<{ id: string; events: string[]; secret_ciphertext: string; url: string; deleted_at: Date | null; project_org: string; organization_id: string }>(
        `SELECT w.id, w.events, w.secret_ciphertext, w.url, w.deleted_at, w.organization_id, p.organization_id AS project_org
           FROM webhooks w JOIN projects p ON p.id = w.project_id WHERE w.organization_id = ANY($1)`,
        [orgs],
      );
      sameSet('live webhooks', webhooks.rows.filter((w) => !w.deleted_at).map((w) => w.id), f.ledger.webhooks);
      for (const id of f.ledger.deletedWebhooks) if (!webhooks.rows.some((w) => w.id === id && w.deleted_at)) problems.push(`webhook ${id} answered 204 to DELETE but is not deleted`);
      for (const w of webhooks.rows) {
        if (!w.events?.length || w.events.some((e) => !EVENT_TYPES.includes(e))) problems.push(`webhook ${w.id} has events ${JSON.stringify(w.events)}`);
        if (!/^v2\.[\w-]+\.[\w-]+\.[\w-]+\.[\w-]+$/.test(w.secret_ciphertext ?? '')) problems.push(`webhook ${w.id} has no usable secret ciphertext`);
        if (!w.url) problems.push(`webhook ${w.id} has no url`);
        if (w.project_org !== w.organization_id) problems.push(`webhook ${w.id} belongs to another organization than its project`);
      }

      // Events are only published to the tenant's first project, which the run never deletes.
      const events = await db.query<{ id: string; type: string; body: string; deliveries: string; org: string; project_org: string }>(
        `SELECT e.id, e.type, e.body, e.organization_id AS org, p.organization_id AS project_org,
                (SELECT count(*) FROM deliveries d WHERE d.event_id = e.id) AS deliveries
           FROM events e JOIN projects p ON p.id = e.project_id WHERE e.organization_id = ANY($1)`,
        [orgs],
      );
      sameSet('events', events.rows.map((e) => e.id), new Set(f.ledger.events.keys()));
      for (const e of events.rows) {
        const said = f.ledger.events.get(e.id);
        if (said !== undefined && said !== Number(e.deliveries)) problems.push(`event ${e.id} has ${e.deliveries} deliveries, the API said ${said}`);
        if (!EVENT_TYPES.includes(e.type)) problems.push(`event ${e.id} has type ${e.type}`);
        if (e.org !== e.project_org) problems.push(`event ${e.id} belongs to another organization than its project`);
        try {
          JSON.parse(e.body);
        } catch {
          problems.push(`event ${e.id} body is not JSON`);
        }
      }

      const crossed = await db.query<{ id: string }>(
        `SELECT d.id FROM deliveries d JOIN events e ON e.id = d.event_id JOIN webhooks w ON w.id = d.webhook_id
          WHERE d.organization_id = ANY($1) AND (d.organization_id <> e.organization_id OR d.organization_id <> w.organization_id OR w.project_id <> e.project_id)`,
        [orgs],
      );
      for (const d of crossed.rows) problems.push(`delivery ${d.id} joins rows of different organizations or projects`);

      // Inbound sources: each secret stored as a v2 ciphertext, in its project's organization.
      const sources = await db.query<{ id: string; secret_ciphertext: string; organization_id: string; project_org: string }>(
        'SELECT s.id, s.secret_ciphertext, s.organization_id, p.organization_id AS project_org FROM sources s JOIN projects p ON p.id = s.project_id WHERE s.organization_id = ANY($1)',
        [orgs],
      );
      for (const src of sources.rows) {
        if (!/^v2\.[\w-]+\.[\w-]+\.[\w-]+\.[\w-]+$/.test(src.secret_ciphertext)) problems.push(`source ${src.id} has no usable secret ciphertext`);
        if (src.project_org !== src.organization_id) problems.push(`source ${src.id} belongs to another organization than its project`);
      }

      const tokens = await db.query<{ id: string; token_hash: string }>('SELECT id, token_hash FROM api_tokens WHERE organization_id = ANY($1) AND revoked_at IS NULL', [orgs]);
      sameSet('live API tokens', tokens.rows.map((t) => t.id), f.ledger.tokens);
      for (const t of tokens.rows) if (!/^[0-9a-f]{64}$/.test(t.token_hash)) problems.push(`API token ${t.id} has no hash`);

      const ownerless = await db.query<{ id: string }>(
        `SELECT o.id FROM organizations o WHERE o.id = ANY($1) AND NOT EXISTS (SELECT 1 FROM memberships m WHERE m.organization_id = o.id AND m.role = 'owner')`,
        [orgs],
      );
      for (const o of ownerless.rows) problems.push(`organization ${o.id} has no owner`);
      const orgRows = await db.query<{ id: string; name: string; plan: string }>('SELECT id, name, plan FROM organizations WHERE id = ANY($1)', [orgs]);
      for (const o of orgRows.rows) if (!o.name?.trim()) problems.push(`organization ${o.id} has an empty name`);
    } finally {
      await db.end();
    }
    return problems;
  }

  it('knows every path parameter of the write routes', () => {
    expect(unknownParams(writeOps)).toEqual([]);
    expect(writeOps.length).toBeGreaterThanOrEqual(20);
  });

  it('answers thousands of generated bodies on every write route without a 5xx, each error in the contract shape', async () => {
    const rng = prng(SEED);
    const f = await fuzzTenant();
    const table = validBodies(f.tenant, { memberEmail: f.memberEmail });
    const targets = targetsFor(f);
    const findings = new Findings();
    const accepted = new Set<string>();
    let sent = 0;
    // Routes that change who the caller is or where it belongs go last.
    const late = (op: Operation) => (op.key === 'POST /organizations' ? 2 : op.key === 'POST /auth/logout' ? 1 : 0);
    const ordered = [...writeOps].sort((x, y) => late(x) - late(y));

    for (const op of ordered) {
      const valid = (table[op.key] ?? (op.bodySchema ? sampleFromSchema(doc, op.bodySchema) : {})) as Record<string, unknown>;
      const few = op.method === 'delete' || op.key.startsWith('POST /auth');
      // Password hashing makes the auth routes slow: they get every third systematic body.
      const systematic = systematicBodies(valid).filter((_, i) => !op.key.startsWith('POST /auth') || i % 3 === 0);
      const bodies = [...extremeBodies(valid).slice(0, few ? 4 : undefined), ...systematic];
      const started = Date.now();
      for (let i = 0; i < randomBudgetFor(op); i++) bodies.push(rng.next() < 0.6 ? mutate(rng, valid) : { kind: 'a random JSON value', text: randomJson(rng) });

      const sendOne = async (body: Body) => {
        const target = await targets.of(op);
        const res = await requestFor(stack, op, fillPath(op, target.ids)).set('Authorization', target.auth).set('Content-Type', 'application/json').send(body.text);
        sent++;
        const finding = check(`${op.key} ${body.text.length > 160 ? `${body.text.slice(0, 160)}...` : body.text}`, res);
        if (finding) findings.add(`${res.status}${res.status < 500 ? ' (error shape)' : ''} for ${body.kind}`, op.key, finding);
        record(f, op, target.ids, res);
        if (res.status >= 200 && res.status < 300) {
          accepted.add(op.key);
          targets.consume(target.spares);
        }
      };
      // Routes that consume what they are given go one request at a time; the others four at a time.
      const consuming = op.method === 'delete' || op.key === 'POST /auth/logout' || op.pathParams.includes('tokenId');
      await inParallel(bodies, consuming ? 1 : 4, sendOne);
      await restore(f, op);
      if (process.env.FUZZ_TIMING) process.stdout.write(`${op.key}: ${bodies.length} bodies in ${Date.now() - started} ms\n`);
    }
    expect(sent).toBeGreaterThan(2000);
    // The mutations start from valid bodies, so most routes also saw some requests succeed.
    expect(accepted.size).toBeGreaterThanOrEqual(Math.floor(ordered.length / 2));
    expect({
      pollutedPrototype: Object.keys(Object.prototype),
      findings: findings.report(SEED),
      database: await consistencyProblems(f),
    }).toEqual({ pollutedPrototype: [], findings: [], database: [] });
  }, 120_000);

  it('answers odd headers, malformed JSON and long Idempotency-Keys with 4xx in the contract shape', async () => {
    const f = await fuzzTenant();
    const auth = f.tenant.auth.Authorization;
    const findings = new Findings();
    const project = `/projects/${f.tenant.projectId}`;
    const events = `${project}/events`;
    const webhooks = `${project}/webhooks`;
    const validEvent = JSON.stringify({ event: 'baseline.uploaded', data: documented('baseline.uploaded') });
    const validProject = JSON.stringify({ name: 'headers' });
    type Case = { kind: string; path: string; method?: 'post' | 'patch'; headers: Record<string, string>; body: string; expect?: number[] };
    const cases: Case[] = [];
    const malformed = ['{"name":', '{name: "x"}', "{'name':'x'}", '{"name":"x",}', '{"name":"x"}}', '', ' ', 'nul', 'tru', '[1,2', '{"name":"\\x"}', '\u0000', '{"a":1}garbage', '--', '0x10', 'NaN', '"unterminated'];
    for (const path of [project, events, webhooks, '/projects', '/organizations', `/organizations/${f.tenant.organizationId}/api-tokens`]) {
      const method = path === project ? 'patch' : 'post';
      for (const body of malformed) cases.push({ kind: 'malformed JSON', path, method, headers: { 'Content-Type': 'application/json' }, body, expect: [400, 422] });
      for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/xml', 'application/json; charset=utf-16', 'application/json; charset=latin1', 'application/merge-patch+json', 'application/vnd.api+json', 'image/png', '*/*', 'application/json;;;', 'json']) {
        cases.push({ kind: `Content-Type ${type}`, path, method, headers: { 'Content-Type': type }, body: path === events ? validEvent : validProject });
      }
      for (const encoding of ['gzip', 'deflate', 'br', 'identity', 'compress', 'bogus', 'gzip, gzip']) {
        cases.push({ kind: `Content-Encoding ${encoding}`, path, method, headers: { 'Content-Type': 'application/json', 'Content-Encoding': encoding }, body: path === events ? validEvent : validProject });
      }
    }
    for (const key of ['', ' ', 'k'.repeat(255), 'k'.repeat(256), 'k'.repeat(1000), 'k'.repeat(8000), 'é', '../../etc/passwd', '\t', 'a b', 'null']) {
      cases.push({ kind: `Idempotency-Key of ${key.length} characters`, path: events, headers: { 'Content-Type': 'application/json', 'Idempotency-Key': key }, body: validEvent });
    }
    for (const id of ['', '../..', 'x'.repeat(200), '<script>', 'req_ok', 'req_' + 'z'.repeat(128)]) {
      cases.push({ kind: 'odd X-Request-Id', path: events, headers: { 'Content-Type': 'application/json', 'X-Request-Id': id }, body: '{"event":' });
    }
    // (Framing errors such as Content-Length plus Transfer-Encoding are answered by Node's HTTP parser before the app, so they are left out.)
    for (const extra of <Record<string, string>[]>[{ 'X-HTTP-Method-Override': 'DELETE' }, { 'X-Forwarded-For': '10.0.0.1, 127.0.0.1' }, { Accept: 'text/html' }, { Accept: 'application/xml' }, { 'Accept-Encoding': 'gzip' }, { Cookie: 'session=1' }]) {
      cases.push({ kind: `header ${Object.keys(extra)[0]}`, path: '/projects', headers: { 'Content-Type': 'application/json', ...extra }, body: validProject });
    }

    for (const c of cases) {
      let req = requestFor(stack, { method: c.method ?? 'post' }, c.path).set('Authorization', auth);
      for (const [name, value] of Object.entries(c.headers)) req = req.set(name, value);
      const res = await req.send(c.body).catch((err: Error) => ({ status: 0, body: {}, text: String(err.message), headers: {} as Record<string, string> }));
      if (res.status === 0) {
        findings.add(`client could not send (${res.text})`, `${c.path}`, c.kind);
        continue;
      }
      const label = `${(c.method ?? 'post').toUpperCase()} ${c.path} ${c.kind} ${JSON.stringify(c.body.slice(0, 60))}`;
      const finding = check(label, res as never);
      if (finding) findings.add(`${res.status} for ${c.kind}`, c.path, finding);
      else if (c.expect && !c.expect.includes(res.status)) findings.add(`${res.status} instead of ${c.expect.join('/')} for ${c.kind}`, c.path, describeAnswer(label, res as never));
      // The request id is always the server's own (errorShapeProblem checks the body carries the same).
      if (c.headers['X-Request-Id'] !== undefined && !/^req_[0-9a-f]{32}$/.test(String(res.headers['x-request-id']))) {
        findings.add("the caller's X-Request-Id taken as the request id", c.path, describeAnswer(label, res as never));
      }
      if (res.status === 201 && c.path === '/projects') {
        f.ledger.projects.add((res.body as { project: { id: string } }).project.id);
      }
      if (res.status === 202 && c.path === events) {
        const body = res.body as { event: { id: string }; deliveries: number };
        f.ledger.events.set(body.event.id, body.deliveries);
      }
      if (res.status === 201 && c.path === webhooks) f.ledger.webhooks.add((res.body as { webhook: { id: string } }).webhook.id);
      if (res.status === 201 && c.path === '/organizations') f.ledger.orgs.add((res.body as { organization: { id: string } }).organization.id);
      if (res.status === 201 && c.path.endsWith('/api-tokens')) f.ledger.tokens.add((res.body as { apiToken: { id: string } }).apiToken.id);
    }
    expect(cases.length).toBeGreaterThan(200);
    expect({ findings: findings.report(0), database: await consistencyProblems(f) }).toEqual({ findings: [], database: [] });
  }, 60_000);

  /** A value the route accepts for a query parameter, from the document and the tenant's real ids. */
  function validQueryValue(param: Operation['queryParams'][number], ids: Ids): string {
    const { name, schema } = param;
    if (name in ids && ids[name as keyof Ids]) return ids[name as keyof Ids];
    if (name === 'wait') return 'false';
    if (schema.enum?.length) return String(schema.enum[0]);
    if (schema.format === 'date-time') return new Date(Date.now() + (name === 'to' ? 60_000 : -3_600_000)).toISOString();
    if (schema.type === 'integer' || schema.type === 'number') return String(schema.minimum ?? 1);
    if (schema.type === 'boolean') return 'false';
    if (schema.example !== undefined) return String(schema.example);
    if (schema.default !== undefined) return String(schema.default);
    return 'x';
  }

  it('answers odd query parameters on every route that takes them without a 5xx, each error in the contract shape', async () => {
    const rng = prng(SEED + 1);
    const f = await fuzzTenant();
    const targets = targetsFor(f);
    const table = validBodies(f.tenant, { memberEmail: f.memberEmail });
    // A second event and delivery, so that a page of one has a next page and real cursors exist.
    const second = await stack.http().post(`/projects/${f.ids.projectId}/events`).set(f.tenant.auth).send({ event: 'baseline.drift_detected', data: documented('baseline.drift_detected') }).expect(202);
    f.ledger.events.set(second.body.event.id, second.body.deliveries);
    // Another organization's ids, for the parameters that name a resource: none may open its rows.
    const other = await newTenant(stack, 'Other');
    const { webhook: otherWebhook } = await createWebhook(stack, other, 'https://hooks.example.com/other', EVENT_TYPES);
    const otherEvent = await stack.http().post(`/projects/${other.projectId}/events`).set(other.auth).send({ event: 'baseline.uploaded', data: documented('baseline.uploaded') }).expect(202);
    const otherDeliveries = await stack.http().get(`/webhooks/${otherWebhook.id}/deliveries`).set(other.auth).expect(200);
    const foreign = [otherWebhook.id, otherEvent.body.event.id as string, otherDeliveries.body.deliveries[0].id as string, other.projectId, other.organizationId];

    const queryOps = operationsOf(doc).filter((op) => op.queryParams.length > 0 && !op.isPublic);
    // Ids of every kind (wrong kinds for most parameters), another organization's, and next cursors seen so far.
    const idLike = new Set<string>([...Object.values(f.ids).filter((id) => /^[a-z]+_/.test(id)), ...foreign]);
    const findings = new Findings();
    const seen = new Set<string>();
    let sent = 0;
    for (const op of queryOps) {
      const target = await targets.of(op);
      const path = fillPath(op, target.ids);
      const body = op.method === 'get' ? undefined : JSON.stringify(table[op.key] ?? (op.bodySchema ? sampleFromSchema(doc, op.bodySchema) : {}));
      const valid = Object.fromEntries(op.queryParams.map((p) => [p.name, validQueryValue(p, target.ids)]));
      const ask = async (kind: string, pairs: QueryPair[]) => {
        const query = queryString(pairs);
        let req = requestFor(stack, op, query ? `${path}?${query}` : path).set('Authorization', target.auth);
        if (body !== undefined) req = req.set('Content-Type', 'application/json').send(body);
        const res = await req;
        sent++;
        const label = `${op.key} ?${query.length > 160 ? `${query.slice(0, 160)}...` : query}`;
        const finding = check(label, res as never);
        if (finding) findings.add(`${res.status}${res.status < 500 ? ' (error shape)' : ''} for ${kind}`, op.key, finding);
        if (res.status >= 200 && res.status < 300) {
          if (op.key === 'POST /webhooks/{webhookId}/test') f.ledger.events.set(res.body.delivery.eventId, 1);
          const leaked = foreign.filter((id) => !query.includes(id) && res.text.includes(id));
          if (leaked.length) findings.add(`another organization's ids answered for ${kind}`, op.key, `${describeAnswer(label, res as never)} :: ${leaked.join(', ')}`);
          if (typeof res.body?.nextCursor === 'string') idLike.add(res.body.nextCursor);
        }
        return res;
      };

      // The control: the route answers 2xx without a query, for a page of one, and with every parameter
      // valid (the cursor being the page of one's nextCursor, or left out when there is none).
      const control = async (pairs: QueryPair[]) => {
        const res = await ask('the control', pairs);
        if (res.status < 200 || res.status > 299) findings.add('the control is not answered 2xx', op.key, describeAnswer(op.key, res as never));
        return res;
      };
      await control([]);
      const onePage = valid.limit ? await control([{ key: 'limit', value: '1' }]) : null;
      if ('cursor' in valid) {
        if (typeof onePage?.body?.nextCursor === 'string') valid.cursor = onePage.body.nextCursor;
        else delete valid.cursor;
      }
      await control(Object.entries(valid).map(([key, value]) => ({ key, value })));

      const cases: Array<[string, QueryPair[]]> = [];
      for (const param of op.queryParams) {
        const name = param.name;
        // A parameter of the same name and schema on another route goes through the same code: the full set once, a sample after.
        const signature = `${name} ${JSON.stringify(param.schema)}`;
        const full = !seen.has(signature);
        seen.add(signature);
        const others = ODD_STRINGS.filter((v) => v.length > 0 && !ODD_QUERY_VALUES.includes(v));
        let values = [...ODD_QUERY_VALUES, ...Array.from({ length: 4 }, () => rng.pick(others))];
        if (!full) values = Array.from({ length: 4 }, () => rng.pick(values));
        // wait=true holds the answer until the first attempt ends; no worker runs here, so it would only time out.
        if (name === 'wait') values = values.filter((v) => v !== 'true' && v !== '1');
        for (const value of values) cases.push([`${kindOfValue(value)} in ${name}`, [{ key: name, value }]]);
        const good = valid[name] ?? 'x';
        cases.push([`${name} repeated`, [{ key: name, value: good }, { key: name, value: good }]]);
        cases.push([`${name} repeated with an odd value`, [{ key: name, value: good }, { key: name, value: rng.pick(ODD_QUERY_VALUES) }]]);
        for (const [kind, form] of full ? RAW_QUERY_FORMS : [rng.pick(RAW_QUERY_FORMS)]) cases.push([`${kind} in ${name}`, [{ key: form(name), value: null, raw: true }]]);
        for (const value of param.schema.enum ?? []) cases.push([`an enum value in other case in ${name}`, [{ key: name, value: String(value).toUpperCase() }]]);
        if (/Id$|^cursor$/.test(name)) {
          const ids = [...idLike];
          for (const value of full ? ids : [rng.pick(ids)]) cases.push([`an id of another kind or organization in ${name}`, [{ key: name, value }]]);
        }
      }
      // Random mixes: several parameters at once, valid and odd, with unknown ones beside them.
      for (let i = 0; i < 8; i++) {
        const pairs: QueryPair[] = [];
        for (const param of op.queryParams) {
          const r = rng.next();
          if (r < 0.4 && valid[param.name] !== undefined) pairs.push({ key: param.name, value: valid[param.name] });
          else if (r < 0.7) pairs.push({ key: param.name, value: rng.pick([...ODD_QUERY_VALUES, ...ODD_STRINGS]) });
        }
        for (let k = rng.int(3); k > 0; k--) pairs.push({ key: rng.pick(ODD_QUERY_KEYS), value: rng.pick([...ODD_STRINGS, ...Object.values(valid)]) });
        if (op.queryParams.some((p) => p.name === 'wait')) for (const pair of pairs) if (pair.key === 'wait' && (pair.value === 'true' || pair.value === '1')) pair.value = 'false';
        cases.push(['a mix of valid, odd and unknown parameters', pairs]);
      }
      const started = Date.now();
      await inParallel(cases, 4, async ([kind, pairs]) => void (await ask(kind, pairs)));
      if (process.env.FUZZ_TIMING) process.stdout.write(`${op.key}: ${cases.length} queries in ${Date.now() - started} ms\n`);
    }
    expect(queryOps.filter((op) => op.method === 'get').length).toBeGreaterThanOrEqual(10);
    expect(sent).toBeGreaterThan(500);
    expect({
      pollutedPrototype: Object.keys(Object.prototype),
      findings: findings.report(SEED + 1),
      database: await consistencyProblems(f),
    }).toEqual({ pollutedPrototype: [], findings: [], database: [] });
  }, 120_000);

  describe('odd values refused with a 4xx, not a 500', () => {
    const nul = 'a\u0000b';
    async function expect4xx(res: { status: number; body: unknown; text: string; headers: Record<string, string> }, label: string) {
      expect(describeAnswer(label, res as never)).toMatch(/-> 4\d\d /);
      expect(errorShapeProblem(res as never)).toBeNull();
    }

    it.each<[string, (f: Fuzz) => [Method: 'post' | 'patch', path: string, body: Record<string, unknown>]]>([
      ['PATCH /organizations/{orgId} {name: null}', (f) => ['patch', `/organizations/${f.ids.orgId}`, { name: null }]],
      ['PATCH /organizations/{orgId} {plan: null}', (f) => ['patch', `/organizations/${f.ids.orgId}`, { plan: null }]],
      ['PATCH /webhooks/{webhookId} {url: null}', (f) => ['patch', `/webhooks/${f.ids.webhookId}`, { url: null }]],
      ['PATCH /webhooks/{webhookId} {events: null}', (f) => ['patch', `/webhooks/${f.ids.webhookId}`, { events: null }]],
      ['PATCH /webhooks/{webhookId} {enabled: null}', (f) => ['patch', `/webhooks/${f.ids.webhookId}`, { enabled: null }]],
      ['POST /projects/{projectId}/webhooks {enabled: null}', (f) => ['post', `/projects/${f.ids.projectId}/webhooks`, { url: 'https://hooks.example.com/n', events: ['baseline.uploaded'], enabled: null }]],
      ['POST /projects {organizationId: null}', () => ['post', '/projects', { name: 'n', organizationId: null }]],
    ])('refuses null for a field that cannot be null: %s', async (label, build) => {
      const f = await fuzzTenant();
      const [method, path, body] = build(f);
      const res = await requestFor(stack, { method }, path).set(f.tenant.auth).send(body);
      if (res.status < 300) {
        // Accepting the request (as if the field were left out) is fine if nothing became null that must not be.
        if (res.body.webhook && method === 'post') f.ledger.webhooks.add(res.body.webhook.id);
        if (res.body.project && method === 'post') f.ledger.projects.add(res.body.project.id);
        expect(await consistencyProblems(f)).toEqual([]);
        return;
      }
      await expect4xx(res, label);
    });

    it.each<[string, (f: Fuzz) => ['post' | 'patch', string, Record<string, unknown>]]>([
      ['a project name', () => ['post', '/projects', { name: nul }]],
      ['a project rename', (f) => ['patch', `/projects/${f.ids.projectId}`, { name: nul }]],
      ['an organization name', () => ['post', '/organizations', { name: nul }]],
      ['an organization rename', (f) => ['patch', `/organizations/${f.ids.orgId}`, { name: nul }]],
      ['an API token name', (f) => ['post', `/organizations/${f.ids.orgId}/api-tokens`, { name: nul, role: 'member' }]],
      ['a webhook url', (f) => ['post', `/projects/${f.ids.projectId}/webhooks`, { url: `https://hooks.example.com/${nul}`, events: ['baseline.uploaded'] }]],
      ['a webhook description', (f) => ['post', `/projects/${f.ids.projectId}/webhooks`, { url: 'https://hooks.example.com/d', events: ['baseline.uploaded'], description: nul }]],
      ['a webhook url change', (f) => ['patch', `/webhooks/${f.ids.webhookId}`, { url: `https://hooks.example.com/${nul}` }]],
      ['a login email', (f) => ['post', '/auth/login', { email: `${f.tenant.email}\u0000`, password: 'correct horse battery' }]],
      ['a signup name', () => ['post', '/auth/signup', { email: `nul-${randomBytes(4).toString('hex')}@example.com`, password: 'correct horse battery', name: nul }]],
    ])('refuses a NUL character in %s with a 4xx', async (label, build) => {
      const f = await fuzzTenant();
      const [method, path, body] = build(f);
      const res = await requestFor(stack, { method }, path).set(f.tenant.auth).send(body);
      await expect4xx(res, label);
    });

    it.each<[string, (f: Fuzz) => ['post' | 'patch', string, Record<string, unknown>]]>([
      ['a signup email', () => ['post', '/auth/signup', { email: '\udfff\ud800@example.com', password: 'correct horse battery', name: 'Surrogate' }]],
      ['a signup email (alone)', () => ['post', '/auth/signup', { email: '\ud800', password: 'correct horse battery', name: 'Surrogate' }]],
      ['the email of a new member', (f) => ['post', `/organizations/${f.ids.orgId}/members`, { email: '\udfff\ud800', role: 'member' }]],
      ['a login email', () => ['post', '/auth/login', { email: '\ud800@example.com', password: 'correct horse battery' }]],
    ])('refuses an unpaired UTF-16 surrogate in %s with a 4xx', async (label, build) => {
      const f = await fuzzTenant();
      const [method, path, body] = build(f);
      const res = await requestFor(stack, { method }, path).set(f.tenant.auth).send(body);
      await expect4xx(res, label);
    });

    it('keeps a NUL character inside event data, where JSON can carry it', async () => {
      const f = await fuzzTenant();
      const res = await stack.http().post(`/projects/${f.ids.projectId}/events`).set(f.tenant.auth).send({ event: 'baseline.uploaded', data: documented('baseline.uploaded', { note: nul }) }).expect(202);
      const got = await stack.http().get(`/events/${res.body.event.id}`).set(f.tenant.auth).expect(200);
      expect(got.body.event.payload.data).toEqual(documented('baseline.uploaded', { note: nul }));
    });

    it.each([
      ['an object nested 3000 deep beside valid fields', JSON.stringify({ name: 'deep' }).slice(0, -1) + `,"extra":${deepObject(3000)}}`],
      ['arrays nested 5000 deep', `${'['.repeat(5000)}${']'.repeat(5000)}`],
      ['an object nested 5000 deep', deepObject(5000)],
    ])('refuses %s with a 4xx', async (label, text) => {
      const f = await fuzzTenant();
      const res = await stack.http().post('/projects').set(f.tenant.auth).set('Content-Type', 'application/json').send(text);
      await expect4xx(res, label);
    });

    it('answers event data nested 3000 deep with a 4xx or accepts it, never a 500', async () => {
      const f = await fuzzTenant();
      const text = `{"event":"baseline.uploaded","data":${deepObject(3000)}}`;
      const res = await stack.http().post(`/projects/${f.ids.projectId}/events`).set(f.tenant.auth).set('Content-Type', 'application/json').send(text);
      expect(describeAnswer('deep event data', res)).toMatch(/-> (202|4\d\d) /);
      if (res.status === 202) f.ledger.events.set(res.body.event.id, res.body.deliveries);
      expect(await consistencyProblems(f)).toEqual([]);
    });
  });
});
