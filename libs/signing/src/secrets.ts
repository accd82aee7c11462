import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';

export const SECRET_PREFIX = 'whsec_';

/** A new webhook secret: `whsec_` followed by the base64 of 32 random bytes. */
export function generateWebhookSecret(): string {
  return SECRET_PREFIX + randomBytes(32).toString('base64');
}

/** The key bytes that Standard Webhooks signs with: the base64-decoded part after `whsec_`. */
export function standardWebhooksKey(secret: string): Buffer {
  const encoded = secret.startsWith(SECRET_PREFIX) ? secret.slice(SECRET_PREFIX.length) : secret;
  return Buffer.from(encoded, 'base64');
}

/**
 * The keys that open stored secrets: `current` (SECRETS_KEY) encrypts and decrypts; `previous`
 * (SECRETS_KEY_PREVIOUS, keys being retired) only decrypt, so that SECRETS_KEY can be replaced
 * without losing a secret. A bare key is a ring of that one key.
 */
export interface SecretsKeyRing {
  current: Buffer;
  previous: readonly Buffer[];
}

export type SecretsKeys = Buffer | SecretsKeyRing;

/** The ring of a loaded configuration: SECRETS_KEY, then the keys of SECRETS_KEY_PREVIOUS. */
export function secretsKeyRing(settings: { secretsKey: Buffer; previousSecretsKeys: readonly Buffer[] }): SecretsKeyRing {
  return { current: settings.secretsKey, previous: settings.previousSecretsKeys };
}

function ringOf(keys: SecretsKeys): SecretsKeyRing {
  return Buffer.isBuffer(keys) ? { current: keys, previous: [] } : keys;
}

/** A fixed label, so that a key id is never the hash of the bare key as another tool might publish it. */
const KEY_ID_LABEL = 'bellhop secrets key id\0';

/**
 * The id written into each ciphertext so that decryption knows its key without trying them all:
 * the base64url of the first 8 bytes of SHA-256 over a fixed label and the key. It reveals
 * nothing usable about a random 32-byte key and may be logged, as the error messages do.
 */
export function secretsKeyId(key: Buffer): string {
  return createHash('sha256').update(KEY_ID_LABEL, 'utf8').update(key).digest().subarray(0, 8).toString('base64url');
}

/** What every ciphertext written under `key` starts with: how the re-encryption finds the ones that are not. */
export function ciphertextPrefix(key: Buffer): string {
  return `v2.${secretsKeyId(key)}.`;
}

/**
 * A stored secret that no key of the ring opens. `keyId` is the key it names (`v2`), or null for
 * a `v1` ciphertext, which names none.
 */
export class SecretsKeyError extends Error {
  constructor(
    message: string,
    readonly keyId: string | null,
  ) {
    super(message);
    this.name = 'SecretsKeyError';
  }
}

/**
 * Encrypts a secret for storage with AES-256-GCM under the ring's current key:
 * `v2.<key id>.<iv>.<tag>.<ciphertext>`, base64url parts. `aad` binds the ciphertext to its row
 * (the webhook id), so a copied ciphertext fails to open elsewhere.
 */
export function encryptSecret(plaintext: string, keys: SecretsKeys, aad: string): string {
  const key = ringOf(keys).current;
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(Buffer.from(aad, 'utf8'));
  const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  const tag = cipher.getAuthTag();
  return ['v2', secretsKeyId(key), iv.toString('base64url'), tag.toString('base64url'), ciphertext.toString('base64url')].join('.');
}

function open(key: Buffer, iv: string, tag: string, ciphertext: string, aad: string): string {
  // A full 16-byte tag only: GCM would otherwise accept a shortened one, which is easier to forge.
  const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'), { authTagLength: 16 });
  decipher.setAAD(Buffer.from(aad, 'utf8'));
  decipher.setAuthTag(Buffer.from(tag, 'base64url'));
  return Buffer.concat([decipher.update(Buffer.from(ciphertext, 'base64url')), decipher.final()]).toString('utf8');
}

/**
 * Opens a stored secret with the key its id names. A `v1` ciphertext (written before key ids)
 * is tried under the current key, then under each previous one; GCM's tag tells a wrong key
 * apart, so the first that opens is the right one.
 */
export function decryptSecret(stored: string, keys: SecretsKeys, aad: string): string {
  const ring = ringOf(keys);
  const parts = stored.split('.');
  if (parts[0] === 'v2' && parts.length === 5) {
    const [, keyId, iv, tag, ciphertext] = parts;
    const key = [ring.current, ...ring.previous].find((candidate) => secretsKeyId(candidate) === keyId);
    if (!key) {
      throw new SecretsKeyError(
        `the secret is encrypted under key ${keyId}, which is neither SECRETS_KEY (key ${secretsKeyId(ring.current)}) nor in SECRETS_KEY_PREVIOUS: add the key ${keyId} to SECRETS_KEY_PREVIOUS`,
        keyId,
      );
    }
    try {
      return open(key, iv, tag, ciphertext, aad);
    } catch {
      // The key is the right one, so the ciphertext itself is wrong: altered, or copied from another row.
      throw new Error(`the secret does not open under key ${keyId}: its ciphertext was altered or belongs to another row`);
    }
  }
  if (parts[0] === 'v1' && parts.length === 4) {
    const [, iv, tag, ciphertext] = parts;
    for (const key of [ring.current, ...ring.previous]) {
      try {
        return open(key, iv, tag, ciphertext, aad);
      } catch {
        // Not this key (or not this row): the next one.
      }
    }
    throw new SecretsKeyError(
      'the secret (stored before key ids, v1) opens under no key of SECRETS_KEY and SECRETS_KEY_PREVIOUS: add the key it was stored under to SECRETS_KEY_PREVIOUS (or its ciphertext was altered or belongs to another row)',
      null,
    );
  }
  throw new Error('unrecognised secret ciphertext');
}
