import { createCipheriv, randomBytes } from 'node:crypto';
import { PREVIOUS_SECRET_GRACE_MS, reencryptWebhookSecrets, validSecrets } from './secret-set';
import { SecretsKeyError, SecretsKeyRing, ciphertextPrefix, decryptSecret, encryptSecret, generateWebhookSecret, secretsKeyId } from './secrets';

/** A ciphertext as stored before key ids: `v1.<iv>.<tag>.<ciphertext>`, nothing naming the key. */
function legacyCiphertext(plaintext: string, key: Buffer, aad: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(Buffer.from(aad, 'utf8'));
  const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  return ['v1', iv.toString('base64url'), cipher.getAuthTag().toString('base64url'), ciphertext.toString('base64url')].join('.');
}

describe('secrets under a key ring', () => {
  const [retired, previous, current] = [randomBytes(32), randomBytes(32), randomBytes(32)];
  const ring: SecretsKeyRing = { current, previous: [retired, previous] };
  const id = 'wh_1';

  it('key ids are short, stable, one per key, and not the key', () => {
    expect(secretsKeyId(current)).toMatch(/^[A-Za-z0-9_-]{11}$/);
    expect(secretsKeyId(Buffer.from(current))).toBe(secretsKeyId(current));
    expect(new Set([retired, previous, current].map(secretsKeyId)).size).toBe(3);
    expect(current.toString('base64url')).not.toContain(secretsKeyId(current));
  });

  it('writes v2 under the current key, naming it, and opens it with the ring or the bare key', () => {
    const secret = generateWebhookSecret();
    const stored = encryptSecret(secret, ring, id);
    expect(stored.startsWith(`v2.${secretsKeyId(current)}.`)).toBe(true);
    expect(stored.startsWith(ciphertextPrefix(current))).toBe(true);
    expect(stored.split('.')).toHaveLength(5);
    expect(stored).not.toContain(secret.slice(6, 20));
    expect(decryptSecret(stored, ring, id)).toBe(secret);
    expect(decryptSecret(stored, current, id)).toBe(secret);
    // A fresh IV each time.
    expect(encryptSecret(secret, ring, id)).not.toBe(stored);
  });

  it('opens a v2 secret with the previous key its id names', () => {
    const secret = generateWebhookSecret();
    const stored = encryptSecret(secret, previous, id);
    expect(decryptSecret(stored, ring, id)).toBe(secret);
    // The id picks the key: the same ciphertext relabelled with another key of the ring does not open.
    const relabelled = stored.split('.');
    relabelled[1] = secretsKeyId(retired);
    expect(() => decryptSecret(relabelled.join('.'), ring, id)).toThrow(/does not open under key/);
  });

  it('refuses a key id it does not hold, naming the id and the setting to add the key to', () => {
    const stranger = randomBytes(32);
    const stored = encryptSecret(generateWebhookSecret(), stranger, id);
    let error: unknown;
    try {
      decryptSecret(stored, ring, id);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(SecretsKeyError);
    expect((error as SecretsKeyError).keyId).toBe(secretsKeyId(stranger));
    expect((error as Error).message).toContain(secretsKeyId(stranger));
    expect((error as Error).message).toMatch(/add the key \S+ to SECRETS_KEY_PREVIOUS/);
    // A previous key no longer listed is just as unknown.
    expect(() => decryptSecret(encryptSecret('whsec_x', previous, id), current, id)).toThrow(SecretsKeyError);
  });

  it('still opens v1 secrets (no key id) under the current key or any previous one', () => {
    for (const key of [current, previous, retired]) {
      const secret = generateWebhookSecret();
      expect(decryptSecret(legacyCiphertext(secret, key, id), ring, id)).toBe(secret);
    }
    const orphan = legacyCiphertext('whsec_x', previous, id);
    expect(() => decryptSecret(orphan, current, id)).toThrow(SecretsKeyError);
    expect(() => decryptSecret(orphan, current, id)).toThrow(/SECRETS_KEY_PREVIOUS/);
  });

  it('refuses a ciphertext altered in any part, or of another row, in either version', () => {
    const stored = encryptSecret('whsec_x', ring, id);
    for (const part of [2, 3, 4]) {
      const parts = stored.split('.');
      const bytes = Buffer.from(parts[part], 'base64url');
      bytes[0] ^= 1;
      parts[part] = bytes.toString('base64url');
      expect(() => decryptSecret(parts.join('.'), ring, id)).toThrow();
    }
    const shortTag = stored.split('.');
    shortTag[3] = Buffer.from(shortTag[3], 'base64url').subarray(0, 12).toString('base64url');
    expect(() => decryptSecret(shortTag.join('.'), ring, id)).toThrow();
    expect(() => decryptSecret(stored, ring, 'wh_2')).toThrow(/another row/);
    expect(() => decryptSecret(legacyCiphertext('whsec_x', previous, id), ring, 'wh_2')).toThrow();
    expect(() => decryptSecret(`${stored}.x`, ring, id)).toThrow(/unrecognised/);
    expect(() => decryptSecret('v3.a.b.c.d', ring, id)).toThrow(/unrecognised/);
  });
});

describe('reencryptWebhookSecrets', () => {
  const [old, current] = [randomBytes(32), randomBytes(32)];
  const ring: SecretsKeyRing = { current, previous: [old] };
  const id = 'wh_1';
  const expiresAt = new Date(Date.now() + PREVIOUS_SECRET_GRACE_MS).toISOString();

  it('moves every secret of a webhook under the current key, keeping them and their order', () => {
    const [now, newer, older] = [1, 2, 3].map(() => generateWebhookSecret());
    const webhook = {
      id,
      secretCiphertext: legacyCiphertext(now, old, id),
      previousSecrets: [
        { ciphertext: encryptSecret(newer, current, id), expiresAt },
        { ciphertext: encryptSecret(older, old, id), expiresAt },
      ],
    };
    const result = reencryptWebhookSecrets(webhook, ring);
    expect(result.reencrypted).toBe(2);
    expect(result.secretCiphertext.startsWith(ciphertextPrefix(current))).toBe(true);
    expect(result.previousSecrets.every((entry) => entry.ciphertext.startsWith(ciphertextPrefix(current)))).toBe(true);
    // The one already under the current key is left as it was.
    expect(result.previousSecrets[0].ciphertext).toBe(webhook.previousSecrets[0].ciphertext);
    // The old key is no longer needed, and the row id is still bound in.
    const rewritten = { id, secretCiphertext: result.secretCiphertext, previousSecrets: result.previousSecrets };
    expect(validSecrets(rewritten, current)).toEqual([now, newer, older]);
    expect(() => validSecrets({ ...rewritten, id: 'wh_2' }, current)).toThrow();

    // A second pass has nothing to do.
    expect(reencryptWebhookSecrets(rewritten, ring)).toEqual({ secretCiphertext: rewritten.secretCiphertext, previousSecrets: rewritten.previousSecrets, reencrypted: 0 });
  });

  it('rewrites nothing of a webhook one of whose secrets opens under no key of the ring', () => {
    const stranger = randomBytes(32);
    const webhook = {
      id,
      secretCiphertext: encryptSecret(generateWebhookSecret(), old, id),
      previousSecrets: [{ ciphertext: encryptSecret(generateWebhookSecret(), stranger, id), expiresAt }],
    };
    expect(() => reencryptWebhookSecrets(webhook, ring)).toThrow(SecretsKeyError);
    expect(() => reencryptWebhookSecrets(webhook, ring)).toThrow(secretsKeyId(stranger));
  });
});
