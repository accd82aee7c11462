import { createHmac } from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import { bellwetherSignature, signedHeaders, standardWebhooksSignature } from './signature';
import { decryptSecret, encryptSecret, generateWebhookSecret, standardWebhooksKey } from './secrets';

describe('signatures', () => {
  it('matches the published Standard Webhooks test vector', () => {
    const signature = standardWebhooksSignature('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_p5jXN8AQM9LWM0D4loKWxJek', 1614265330, '{"test": 2432232314}');
    expect(signature).toBe('v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=');
  });

  it('signs the Bellwether header with the whole secret string as the HMAC key', () => {
    const secret = 'whsec_abc';
    const body = '{"event":"baseline.uploaded"}';
    expect(bellwetherSignature(secret, body)).toBe('sha256=' + createHmac('sha256', 'whsec_abc').update(body).digest('hex'));
  });

  it('produces headers that the standardwebhooks library verifies, with one entry per valid secret, newest first', () => {
    const current = generateWebhookSecret();
    const previous = generateWebhookSecret();
    const body = '{"event":"baseline.drift_detected","data":{}}';
    const timestampSeconds = Math.floor(Date.now() / 1000);
    const headers = signedHeaders({
      secrets: [current, previous],
      eventId: 'evt_1',
      eventType: 'baseline.drift_detected',
      deliveryId: 'dlv_1',
      attempt: 2,
      timestampSeconds,
      body,
      userAgent: 'Bellhop-Webhooks/1.0.0',
    });
    expect(headers['x-bellwether-attempt']).toBe('2');
    expect(headers['x-bellwether-signature']).toBe(bellwetherSignature(current, body));
    expect(headers['x-bellwether-signature-previous']).toBe(bellwetherSignature(previous, body));
    const entries = headers['webhook-signature'].split(' ');
    expect(entries).toHaveLength(2);
    expect(entries[0]).toBe(standardWebhooksSignature(current, 'evt_1', timestampSeconds, body));
    const wire = { 'webhook-id': headers['webhook-id'], 'webhook-timestamp': headers['webhook-timestamp'], 'webhook-signature': headers['webhook-signature'] };
    expect(new Webhook(current).verify(body, wire)).toEqual(JSON.parse(body));
    expect(new Webhook(previous).verify(body, wire)).toEqual(JSON.parse(body));
    expect(() => new Webhook(generateWebhookSecret()).verify(body, wire)).toThrow();
  });

  it('sends a previous signature for every previous secret still signing, newest first', () => {
    const [current, newer, older] = [1, 2, 3].map(() => generateWebhookSecret());
    const body = '{"event":"baseline.uploaded"}';
    const headers = signedHeaders({
      secrets: [current, newer, older],
      eventId: 'evt_1',
      eventType: 'baseline.uploaded',
      deliveryId: 'dlv_1',
      attempt: 1,
      timestampSeconds: 1,
      body,
      userAgent: 'x',
    });
    expect(headers['x-bellwether-signature']).toBe(bellwetherSignature(current, body));
    expect(headers['x-bellwether-signature-previous']).toBe(`${bellwetherSignature(newer, body)}, ${bellwetherSignature(older, body)}`);
    expect(headers['webhook-signature'].split(' ')).toEqual([current, newer, older].map((s) => standardWebhooksSignature(s, 'evt_1', 1, body)));
  });

  it('sends no previous signature outside a rotation', () => {
    const headers = signedHeaders({
      secrets: [generateWebhookSecret()],
      eventId: 'evt_1',
      eventType: 'baseline.uploaded',
      deliveryId: 'dlv_1',
      attempt: 1,
      timestampSeconds: 1,
      body: '{}',
      userAgent: 'x',
    });
    expect(headers).not.toHaveProperty('x-bellwether-signature-previous');
    expect(headers['webhook-signature'].split(' ')).toHaveLength(1);
  });
});

describe('secrets', () => {
  const key = Buffer.alloc(32, 1);

  it('are whsec_ and the base64 of 32 random bytes', () => {
    const secret = generateWebhookSecret();
    expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    expect(standardWebhooksKey(secret)).toHaveLength(32);
    expect(generateWebhookSecret()).not.toBe(secret);
  });

  it('round-trip through AES-256-GCM and never store the plaintext', () => {
    const secret = generateWebhookSecret();
    const stored = encryptSecret(secret, key, 'wh_1');
    expect(stored).not.toContain(secret.slice(6, 20));
    expect(stored.startsWith('v2.')).toBe(true);
    expect(decryptSecret(stored, key, 'wh_1')).toBe(secret);
    expect(encryptSecret(secret, key, 'wh_1')).not.toBe(stored);
  });

  it('refuse to open under another key, another row or after tampering', () => {
    const stored = encryptSecret('whsec_x', key, 'wh_1');
    expect(() => decryptSecret(stored, Buffer.alloc(32, 2), 'wh_1')).toThrow();
    expect(() => decryptSecret(stored, key, 'wh_2')).toThrow();
    const parts = stored.split('.');
    parts[4] = Buffer.from('whsec_y').toString('base64url');
    expect(() => decryptSecret(parts.join('.'), key, 'wh_1')).toThrow();
  });
});
