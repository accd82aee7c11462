import { encryptSecret, generateWebhookSecret } from './secrets';
import { PREVIOUS_SECRET_GRACE_MS, validSecrets } from './secret-set';

describe('validSecrets', () => {
  const key = Buffer.alloc(32, 3);
  const id = 'wh_1';
  const now = new Date('2026-01-15T10:30:00.000Z');
  const at = (ms: number) => new Date(now.getTime() + ms).toISOString();

  it('gives the current secret first, then the previous ones still inside their grace, newest first', () => {
    const [current, newer, older, expired] = [1, 2, 3, 4].map(() => generateWebhookSecret());
    const webhook = {
      id,
      secretCiphertext: encryptSecret(current, key, id),
      previousSecrets: [
        { ciphertext: encryptSecret(newer, key, id), expiresAt: at(PREVIOUS_SECRET_GRACE_MS) },
        { ciphertext: encryptSecret(older, key, id), expiresAt: at(1) },
        { ciphertext: encryptSecret(expired, key, id), expiresAt: at(0) },
      ],
    };
    expect(validSecrets(webhook, key, now)).toEqual([current, newer, older]);
    // Each secret stops at its own expiry, not at the newest one's.
    expect(validSecrets(webhook, key, new Date(now.getTime() + 1))).toEqual([current, newer]);
    expect(validSecrets(webhook, key, new Date(now.getTime() + PREVIOUS_SECRET_GRACE_MS))).toEqual([current]);
  });

  it('gives only the current secret when none was rotated out', () => {
    const current = generateWebhookSecret();
    expect(validSecrets({ id, secretCiphertext: encryptSecret(current, key, id), previousSecrets: [] }, key, now)).toEqual([current]);
  });

  it('refuses a malformed list or a ciphertext of another webhook rather than signing with fewer secrets', () => {
    const secretCiphertext = encryptSecret(generateWebhookSecret(), key, id);
    expect(() => validSecrets({ id, secretCiphertext, previousSecrets: null }, key, now)).toThrow(/previous_secrets/);
    expect(() => validSecrets({ id, secretCiphertext, previousSecrets: [{ ciphertext: 'v1.x' }] }, key, now)).toThrow(/previous_secrets/);
    const foreign = { ciphertext: encryptSecret(generateWebhookSecret(), key, 'wh_2'), expiresAt: at(60_000) };
    expect(() => validSecrets({ id, secretCiphertext, previousSecrets: [foreign] }, key, now)).toThrow();
  });
});
