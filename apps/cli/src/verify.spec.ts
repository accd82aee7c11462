import { createHmac } from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import { verifySignature } from './verify';

describe('verifySignature', () => {
  const secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
  const body = Buffer.from('{"event":"baseline.uploaded","data":{"version":1}}');
  const bellwether = 'sha256=' + createHmac('sha256', secret).update(body).digest('hex');

  it('accepts X-Bellwether-Signature: HMAC-SHA256 of the raw body keyed with the whole secret string', () => {
    expect(verifySignature({ scheme: 'bellwether', secret, body, signature: bellwether })).toEqual({ valid: true, scheme: 'bellwether', matched: 0, candidates: 1 });
  });

  it('accepts the X-Bellwether-Signature-Previous list when one entry matches', () => {
    const other = 'sha256=' + createHmac('sha256', 'whsec_other').update(body).digest('hex');
    expect(verifySignature({ scheme: 'bellwether', secret, body, signature: `${other}, ${bellwether}` })).toMatchObject({ valid: true, matched: 1, candidates: 2 });
  });

  it('refuses a changed body, another secret, or a signature of the wrong length', () => {
    const changed = Buffer.from(body.toString().replace('1', '2'));
    expect(verifySignature({ scheme: 'bellwether', secret, body: changed, signature: bellwether }).valid).toBe(false);
    expect(verifySignature({ scheme: 'bellwether', secret: 'whsec_other', body, signature: bellwether }).valid).toBe(false);
    expect(verifySignature({ scheme: 'bellwether', secret, body, signature: bellwether.slice(0, -2) }).valid).toBe(false);
    expect(verifySignature({ scheme: 'bellwether', secret, body, signature: '' })).toMatchObject({ valid: false, reason: 'no signature given' });
  });

  it('accepts the published Standard Webhooks test vector', () => {
    const vector = { scheme: 'standard-webhooks' as const, secret, webhookId: 'msg_p5jXN8AQM9LWM0D4loKWxJek', timestamp: '1614265330', body: Buffer.from('{"test": 2432232314}') };
    expect(verifySignature({ ...vector, signature: 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=' }).valid).toBe(true);
    expect(verifySignature({ ...vector, timestamp: '1614265331', signature: 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=' }).valid).toBe(false);
  });

  it('agrees with the standardwebhooks library, with several space-separated entries during a rotation', () => {
    const timestamp = new Date();
    const signature = new Webhook(secret).sign('evt_1', timestamp, body.toString());
    const seconds = String(Math.floor(timestamp.getTime() / 1000));
    const rotated = `v1,${Buffer.alloc(32).toString('base64')} ${signature}`;
    expect(verifySignature({ scheme: 'standard-webhooks', secret, body, webhookId: 'evt_1', timestamp: seconds, signature: rotated })).toMatchObject({ valid: true, matched: 1, candidates: 2 });
    expect(verifySignature({ scheme: 'standard-webhooks', secret, body, webhookId: 'evt_2', timestamp: seconds, signature: rotated }).valid).toBe(false);
    // Another version's entry never counts, even with the right bytes.
    expect(verifySignature({ scheme: 'standard-webhooks', secret, body, webhookId: 'evt_1', timestamp: seconds, signature: signature.replace('v1,', 'v2,') }).valid).toBe(false);
  });

  it('refuses a timestamp that is not Unix seconds', () => {
    expect(verifySignature({ scheme: 'standard-webhooks', secret, body, webhookId: 'evt_1', timestamp: '2026-01-15', signature: 'v1,x' })).toMatchObject({ valid: false, reason: 'webhook-timestamp must be Unix seconds' });
  });
});
