import {
  CATALOG,
  EVENT_TYPES,
  SOURCE_CATALOG,
  SUBSCRIPTION_NAMES,
  findEventType,
  firstSubscribedType,
  isBuiltInTypeName,
  isSourceSubscription,
  sourceEventType,
  sourceKindOf,
  sourceTestEvent,
  sourceTestType,
  subscriptionsFor,
  subscriptionsOf,
} from './event-types';
import { validateEventData } from './payload-validation';
import { checkWebhookHeaders, checkWebhookSecret, defaultWebhookName } from './webhook-fields';
import { checkWebhookUrl, isPrivateAddress } from './destination';
import { isId, newId } from './ids';
import { MAX_RETRY_AFTER_MS, attemptOutcomeLabel, decideAttempt, formatDurations, nextRetryDelay, parseRetryAfter } from './retry';

describe('ids', () => {
  it('are prefixed, URL-safe and sort by creation time', () => {
    const ids = Array.from({ length: 200 }, () => newId('delivery'));
    expect(ids.every((id) => /^dlv_[0-9A-Z]{26}$/.test(id))).toBe(true);
    expect([...ids].sort()).toEqual(ids);
    expect(isId('delivery', ids[0])).toBe(true);
    expect(isId('webhook', ids[0])).toBe(false);
    expect(isId('delivery', "dlv_'; drop table")).toBe(false);
  });
});

describe('retry schedule', () => {
  const schedule = [60_000, 300_000, 1_800_000, 7_200_000];
  it('waits 1m, 5m, 30m, 2h after attempts 1 to 4 and stops after the fifth', () => {
    expect([1, 2, 3, 4, 5].map((n) => nextRetryDelay(schedule, n))).toEqual([60_000, 300_000, 1_800_000, 7_200_000, null]);
  });

  it('reads Retry-After as seconds or an HTTP date, capped at 24 hours', () => {
    const now = Date.parse('2026-01-15T10:30:00.000Z');
    expect(parseRetryAfter('120', now)).toBe(120_000);
    expect(parseRetryAfter('Thu, 15 Jan 2026 10:35:00 GMT', now)).toBe(300_000);
    expect(parseRetryAfter('999999', now)).toBe(24 * 3600 * 1000);
    expect(parseRetryAfter('Thu, 15 Jan 2026 10:00:00 GMT', now)).toBe(0);
    expect(parseRetryAfter('soon', now)).toBeNull();
    expect(parseRetryAfter(undefined, now)).toBeNull();
  });
});

describe('destinations', () => {
  it.each([
    '127.0.0.1',
    '10.0.0.1',
    '172.16.5.4',
    '192.168.1.1',
    '169.254.169.254',
    '100.64.0.1',
    '0.0.0.0',
    '224.0.0.1',
    '255.255.255.255',
    '198.18.0.1',
    '::1',
    '::',
    'fe80::1',
    'fc00::1',
    'fd12:3456::1',
    'ff02::1',
    '::ffff:127.0.0.1',
    '::ffff:7f00:1',
    '::ffff:a00:1',
    '64:ff9b::7f00:1',
    '64:ff9b::10.0.0.1',
    '2002:7f00:1::',
    '2002:c0a8:101::1',
    '2001:db8::1',
  ])('treats %s as private', (address) => expect(isPrivateAddress(address)).toBe(true));

  it.each(['93.184.216.34', '8.8.8.8', '2606:4700:4700::1111', '::ffff:8.8.8.8', '64:ff9b::808:808', '2002:808:808::1'])('treats %s as public', (address) =>
    expect(isPrivateAddress(address)).toBe(false),
  );

  const strict = { allowHttp: false, allowPrivate: false };
  it.each([
    'https://0x7f.1/',
    'https://2130706433/',
    'https://0177.0.0.1/',
    'https://[::ffff:127.0.0.1]/',
    'https://[::1]:8443/',
    'https://localhost/',
    'https://api.localhost/',
    'http://example.com/',
    'https://u:p@example.com/',
    'ftp://example.com/',
    '/relative',
  ])('refuses %s', (url) => expect(checkWebhookUrl(url, strict)).not.toBeNull());

  it('accepts public https URLs, and http or private ones only when allowed', () => {
    expect(checkWebhookUrl('https://hooks.example.com/x?y=1', strict)).toBeNull();
    expect(checkWebhookUrl('http://127.0.0.1:8080/x', { allowHttp: true, allowPrivate: true })).toBeNull();
    expect(checkWebhookUrl('http://127.0.0.1:8080/x', { allowHttp: true, allowPrivate: false })).not.toBeNull();
  });
});

describe('destinations: special-purpose ranges added after the IANA registries', () => {
  // [range, first address, last address] — every address of each range is refused.
  const ranges: Array<[string, string, string]> = [
    ['::ffff:0:0:0/96 (IPv4-translated)', '::ffff:0:0:0', '::ffff:0:ffff:ffff'],
    ['64:ff9b:1::/48 (local-use NAT64)', '64:ff9b:1::', '64:ff9b:1:ffff:ffff:ffff:ffff:ffff'],
    ['100:0:0:1::/64 (dummy prefix)', '100:0:0:1::', '100::1:ffff:ffff:ffff:ffff'],
    ['5f00::/16 (SRv6 SIDs)', '5f00::', '5f00:ffff:ffff:ffff:ffff:ffff:ffff:ffff'],
    ['3fff::/20 (documentation)', '3fff::', '3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff'],
  ];
  const strict = { allowHttp: false, allowPrivate: false };

  describe.each(ranges)('%s', (_range, first, last) => {
    it.each([first, last])('refuses %s at send time (isPrivateAddress)', (address) => expect(isPrivateAddress(address)).toBe(true));
    it.each([first, last])('refuses %s in a webhook URL', (address) => expect(checkWebhookUrl(`https://[${address}]/hook`, strict)).not.toBeNull());
    it.each([first, last])('still accepts %s when private destinations are allowed', (address) =>
      expect(checkWebhookUrl(`https://[${address}]/hook`, { allowHttp: false, allowPrivate: true })).toBeNull(),
    );
  });

  it('refuses the ranges whatever IPv4 address they carry, and wherever it sits', () => {
    for (const address of ['::ffff:0:8.8.8.8', '::ffff:0:808:808', '64:ff9b:1::8.8.8.8', '64:ff9b:1::808:808', '64:ff9b:1:808:8:800::', '64:ff9b:1::1%eth0']) {
      expect(isPrivateAddress(address)).toBe(true);
    }
    expect(checkWebhookUrl('https://[64:ff9b:1::808:808]/', strict)).not.toBeNull();
    expect(checkWebhookUrl('https://[::ffff:0:8.8.8.8]/', strict)).not.toBeNull();
  });

  // Just outside each range. Public (2000::/3 global unicast) neighbours must stay allowed.
  it.each(['3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff', '3fff:1000::', '2001:200::1', '2a00:1450::1'])('keeps the public neighbour %s allowed', (address) => {
    expect(isPrivateAddress(address)).toBe(false);
    expect(checkWebhookUrl(`https://[${address}]/hook`, strict)).toBeNull();
  });

  // The other neighbours lie in space that is unassigned or reserved by the IETF (::/8, 4000::/3),
  // not public; these only show the new prefixes end where they should (behaviour there is unchanged).
  it.each([
    '::fffe:ffff:ffff:ffff',
    '::ffff:1:0:0',
    '64:ff9b:0:ffff:ffff:ffff:ffff:ffff',
    '64:ff9b:2::',
    '100:0:0:2::',
    '5eff:ffff:ffff:ffff:ffff:ffff:ffff:ffff',
    '5f01::',
  ])('does not stretch a new range over %s', (address) => expect(isPrivateAddress(address)).toBe(false));

  it('keeps the well-known NAT64 prefix and IPv4-mapped addresses judged by their IPv4 part', () => {
    expect(isPrivateAddress('64:ff9b::808:808')).toBe(false);
    expect(isPrivateAddress('64:ff9b::a00:1')).toBe(true);
    expect(isPrivateAddress('::ffff:8.8.8.8')).toBe(false);
    expect(isPrivateAddress('::ffff:0:0')).toBe(true); // ::ffff:0.0.0.0, "this network"
    expect(checkWebhookUrl('https://[64:ff9b::808:808]/', strict)).toBeNull();
  });

  it.each(['192.0.0.9', '192.0.0.170', '192.0.0.255', '100:0:0:1::1', '2001:2::1', '2001:4:112::1', 'fe80::1%eth0', '255.255.255.255'])(
    'refuses the registry entry (or, for 2001:4:112::1, the wider IETF block) containing %s',
    (address) => expect(isPrivateAddress(address)).toBe(true),
  );
});

describe('decideAttempt (the retry rules)', () => {
  const schedule = [60_000, 300_000];
  const facts = { trigger: 'scheduled' as const, statusCode: 500, errored: false, scheduledAttemptsBefore: 0, scheduleMs: schedule, now: 0 };

  it('succeeds on a 2xx without an error, whatever the trigger', () => {
    for (const trigger of ['scheduled', 'manual', 'replay', 'test'] as const) {
      expect(decideAttempt({ ...facts, trigger, statusCode: 204 })).toEqual({ success: true, gone: false, retryInMs: null });
    }
    expect(decideAttempt({ ...facts, statusCode: 200, errored: true }).success).toBe(false);
  });

  it('waits for the next step after a failed scheduled attempt, and stops after the last', () => {
    expect(decideAttempt(facts).retryInMs).toBe(60_000);
    expect(decideAttempt({ ...facts, scheduledAttemptsBefore: 1 }).retryInMs).toBe(300_000);
    expect(decideAttempt({ ...facts, scheduledAttemptsBefore: 2 }).retryInMs).toBeNull();
    expect(decideAttempt({ ...facts, scheduleMs: [] }).retryInMs).toBeNull();
  });

  it('never schedules anything after a manual, replay or test attempt', () => {
    for (const trigger of ['manual', 'replay', 'test'] as const) expect(decideAttempt({ ...facts, trigger })).toEqual({ success: false, gone: false, retryInMs: null });
  });

  it('ends on 410 and honours Retry-After on 429 and 503 only, up to 24 hours', () => {
    expect(decideAttempt({ ...facts, statusCode: 410 })).toEqual({ success: false, gone: true, retryInMs: null });
    expect(decideAttempt({ ...facts, statusCode: 429, retryAfter: '120' }).retryInMs).toBe(120_000);
    expect(decideAttempt({ ...facts, statusCode: 503, retryAfter: '10' }).retryInMs).toBe(60_000);
    expect(decideAttempt({ ...facts, statusCode: 500, retryAfter: '120' }).retryInMs).toBe(60_000);
    expect(decideAttempt({ ...facts, statusCode: 429, retryAfter: '999999' }).retryInMs).toBe(MAX_RETRY_AFTER_MS);
  });
});

describe('formatDurations', () => {
  it('writes each wait in the largest unit that fits exactly', () => {
    expect(formatDurations([60_000, 300_000, 1_800_000, 7_200_000])).toEqual(['1m', '5m', '30m', '2h']);
    expect(formatDurations([1000, 90_000, 86_400_000, 250])).toEqual(['1s', '90s', '24h', '250ms']);
  });
});

describe('attemptOutcomeLabel', () => {
  it('labels successes, HTTP classes and error codes', () => {
    expect(attemptOutcomeLabel(200, null)).toBe('success');
    expect(attemptOutcomeLabel(503, null)).toBe('http_5xx');
    expect(attemptOutcomeLabel(null, 'timeout')).toBe('timeout');
  });
});

describe('webhook fields', () => {
  it('accepts custom headers within the limits and refuses reserved, malformed or too many', () => {
    expect(checkWebhookHeaders({ Authorization: 'Bearer abc', 'X-Team': 'payments' })).toBeNull();
    expect(checkWebhookHeaders({})).toBeNull();
    for (const reserved of ['Host', 'content-type', 'Content-Length', 'User-Agent', 'Connection', 'Transfer-Encoding', 'X-Bellwether-Signature', 'webhook-id', 'Keep-Alive', 'Upgrade', 'Expect', 'TE', 'Content-Encoding']) {
      expect(checkWebhookHeaders({ [reserved]: 'x' })).toMatch(/reserved/);
    }
    expect(checkWebhookHeaders({ 'bad name': 'x' })).toMatch(/letters, digits or dashes/);
    expect(checkWebhookHeaders({ 'X-A': 'line\nbreak' })).toMatch(/printable ASCII/);
    expect(checkWebhookHeaders({ 'X-A': 'é' })).toMatch(/printable ASCII/);
    expect(checkWebhookHeaders({ 'X-A': 'x'.repeat(1025) })).toMatch(/1024/);
    expect(checkWebhookHeaders({ 'X-A': 1 })).toMatch(/value/);
    expect(checkWebhookHeaders({ 'X-A': 'a', 'x-a': 'b' })).toMatch(/twice/);
    expect(checkWebhookHeaders(Object.fromEntries(Array.from({ length: 21 }, (_, i) => [`X-H${i}`, 'v'])))).toMatch(/at most 20/);
    expect(checkWebhookHeaders(['X-A'])).toMatch(/object/);
    expect(checkWebhookHeaders(null)).toMatch(/object/);
  });

  it('accepts a chosen secret of 24 to 64 bytes in standard base64 after whsec_', () => {
    const secret = (bytes: number) => 'whsec_' + Buffer.alloc(bytes, 7).toString('base64');
    expect(checkWebhookSecret(secret(24))).toBeNull();
    expect(checkWebhookSecret(secret(32))).toBeNull();
    expect(checkWebhookSecret(secret(64))).toBeNull();
    expect(checkWebhookSecret(secret(23))).not.toBeNull();
    expect(checkWebhookSecret(secret(65))).not.toBeNull();
    expect(checkWebhookSecret(secret(32).replace('whsec_', 'whsk_'))).not.toBeNull();
    expect(checkWebhookSecret('whsec_' + Buffer.alloc(32, 7).toString('base64url'))).not.toBeNull();
    expect(checkWebhookSecret('whsec_not base64!')).not.toBeNull();
    // Non-zero padding bits: not the canonical encoding of any key.
    expect(checkWebhookSecret('whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB==')).not.toBeNull();
    expect(checkWebhookSecret(42)).not.toBeNull();
  });

  it('names a webhook after its URL\'s host by default', () => {
    expect(defaultWebhookName('https://hooks.example.com/bellwether')).toBe('hooks.example.com');
    expect(defaultWebhookName('http://127.0.0.1:4000/hooks')).toBe('127.0.0.1');
  });
});

describe('the event catalog as documented', () => {
  it('validates the documentation\'s own examples against their schemas', () => {
    for (const definition of EVENT_TYPES) expect(validateEventData(definition.type, definition.example)).toEqual([]);
  });

  it('points at every missing or mistyped required field', () => {
    expect(validateEventData('baseline.drift_detected', {})).toEqual(
      expect.arrayContaining([
        { path: '/fromVersion', message: 'is required' },
        { path: '/toVersion', message: 'is required' },
        { path: '/severity', message: 'is required' },
        { path: '/changes', message: 'is required' },
      ]),
    );
    const drift = findEventType('baseline.drift_detected')!.example as { changes: Record<string, unknown> };
    expect(validateEventData('baseline.drift_detected', { ...drift, severity: 'medium' })).toEqual([{ path: '/severity', message: 'must be one of: none, info, warning, breaking' }]);
    expect(validateEventData('baseline.drift_detected', { ...drift, changes: { ...drift.changes, toolsAdded: 'new_tool' } })).toEqual([{ path: '/changes/toolsAdded', message: 'must be array' }]);
    expect(validateEventData('baseline.uploaded', { version: 0, hash: 'h', toolCount: 1, serverName: 's', cliVersion: '1' })).toEqual([{ path: '/version', message: 'must be >= 1' }]);
    expect(validateEventData('baseline.security_finding', { version: 1, findings: [] })).toEqual([{ path: '/findings', message: 'must NOT have fewer than 1 items' }]);
    expect(validateEventData('baseline.security_finding', { version: 1, findings: [{ severity: 'high', category: 'c', tool: 't' }] })).toEqual([{ path: '/findings/0/description', message: 'is required' }]);
  });

  it('points at the root of data with the empty JSON Pointer', () => {
    expect(validateEventData('baseline.uploaded', 5)).toEqual([{ path: '', message: 'must be object' }]);
  });

  it('allows extra properties', () => {
    expect(validateEventData('baseline.uploaded', { ...findEventType('baseline.uploaded')!.example, extra: { anything: true } })).toEqual([]);
  });
});

describe('subscriptions', () => {
  it('lets a type reach its own name, "*" and its category\'s wildcard', () => {
    expect(subscriptionsOf('baseline.uploaded')).toEqual(['baseline.uploaded', '*', 'baseline.*']);
    expect(subscriptionsOf('webhook.disabled')).toEqual(['webhook.disabled', '*', 'operational.*']);
    expect(SUBSCRIPTION_NAMES).toEqual(expect.arrayContaining(['*', 'baseline.*', 'operational.*', 'baseline.uploaded']));
  });

  it('picks the first built-in type a webhook receives for its test button', () => {
    expect(firstSubscribedType(['baseline.security_finding'])).toBe('baseline.security_finding');
    expect(firstSubscribedType(['*'])).toBe('baseline.uploaded');
    expect(firstSubscribedType(['operational.*'])).toBe('webhook.disabled');
  });
});

describe('source event types', () => {
  it("names an event github.<X-GitHub-Event> or gitlab.<object_kind>, and refuses names a type cannot hold", () => {
    expect(sourceEventType('github', 'push')).toBe('github.push');
    expect(sourceEventType('github', 'pull_request_review_comment')).toBe('github.pull_request_review_comment');
    expect(sourceEventType('gitlab', 'merge_request')).toBe('gitlab.merge_request');
    for (const bad of [undefined, null, 42, '', 'Push Hook', 'push.x', 'PUSH', 'a'.repeat(58), '../push']) expect(sourceEventType('github', bad)).toBeNull();
    expect(sourceEventType('gitlab', 'a'.repeat(57))).toHaveLength(64);
  });

  it('reaches subscribers by name, by family and by "*", never by another family', () => {
    expect(sourceKindOf('github.push')).toBe('github');
    expect(sourceKindOf('gitlab.push')).toBe('gitlab');
    expect(sourceKindOf('baseline.uploaded')).toBeUndefined();
    // Stored as category `source`: received by `source.*` and by the family's wildcard.
    expect(subscriptionsFor('github.push', 'source')).toEqual(['github.push', '*', 'source.*', 'github.*']);
    expect(subscriptionsOf('gitlab.merge_request')).toEqual(['gitlab.merge_request', '*', 'source.*', 'gitlab.*']);
    expect(sourceTestEvent('gitlab.push')?.category).toBe('source');
    for (const name of ['source.*', 'github.*', 'gitlab.*', 'github.push', 'gitlab.tag_push']) expect(isSourceSubscription(name)).toBe(true);
    for (const name of ['source', 'github', 'github.Push', 'bitbucket.push', 'baseline.*', `github.${'a'.repeat(58)}`]) expect(isSourceSubscription(name)).toBe(false);
    // Reserved: no project can take a source's type name for its own.
    expect(isBuiltInTypeName('github.push')).toBe(true);
  });

  it('lists the families in the catalog by the names one subscribes with, and nowhere a type name is expected', () => {
    expect(SOURCE_CATALOG.map((t) => [t.type, t.category])).toEqual([
      ['github.*', 'source'],
      ['gitlab.*', 'source'],
    ]);
    expect(CATALOG).toEqual([...EVENT_TYPES, ...SOURCE_CATALOG]);
    for (const family of SOURCE_CATALOG) {
      expect(isSourceSubscription(family.type)).toBe(true);
      expect(family.example).toEqual(sourceTestEvent(sourceTestType(family.type) ?? '')?.data);
      expect(findEventType(family.type)).toBeUndefined();
    }
    // `source.*` is a subscription (isSourceSubscription), but, like the families, not a name of the built-in list.
    expect(sourceTestType('source.*')).toBe('github.ping');
    expect(SUBSCRIPTION_NAMES).not.toContain('source.*');
    expect(SUBSCRIPTION_NAMES).not.toContain('github.*');
  });
});
