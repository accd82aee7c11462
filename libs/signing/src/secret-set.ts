import { SecretsKeys, ciphertextPrefix, decryptSecret, encryptSecret } from './secrets';

/** How long a rotated-out secret keeps signing, so receivers can roll over without dropping events. */
export const PREVIOUS_SECRET_GRACE_MS = 24 * 60 * 60 * 1000;

/**
 * One rotated-out secret, as stored in `webhooks.previous_secrets` (a JSON array, newest first).
 * The ciphertext is the one the secret had while it was current, so it opens with the webhook id.
 */
export interface PreviousSecret {
  ciphertext: string;
  /** ISO-8601 UTC; the secret stops signing at this instant. */
  expiresAt: string;
}

export interface WebhookSecrets {
  id: string;
  secretCiphertext: string;
  /** The `previous_secrets` column as read (Prisma `Json`): an array of {@link PreviousSecret}. */
  previousSecrets: unknown;
}

/**
 * The stored list, checked: a malformed entry is an error, like a ciphertext that does not open,
 * rather than a secret silently left out of the signatures a receiver is waiting for.
 */
export function previousSecretEntries(stored: unknown): PreviousSecret[] {
  if (!Array.isArray(stored)) throw new Error('previous_secrets is not a list');
  return stored.map((entry: unknown) => {
    const { ciphertext, expiresAt } = (entry ?? {}) as Partial<PreviousSecret>;
    if (typeof ciphertext !== 'string' || typeof expiresAt !== 'string' || Number.isNaN(Date.parse(expiresAt))) {
      throw new Error('unrecognised previous_secrets entry');
    }
    return { ciphertext, expiresAt };
  });
}

/**
 * The secrets a webhook signs with at `now`: the current one first, then each previous one still
 * inside its own grace period, newest first (the stored order: each rotation puts the secret it
 * replaces at the front).
 */
export function validSecrets(webhook: WebhookSecrets, keys: SecretsKeys, now: Date = new Date()): string[] {
  const secrets = [decryptSecret(webhook.secretCiphertext, keys, webhook.id)];
  for (const entry of previousSecretEntries(webhook.previousSecrets)) {
    if (Date.parse(entry.expiresAt) > now.getTime()) secrets.push(decryptSecret(entry.ciphertext, keys, webhook.id));
  }
  return secrets;
}

export interface ReencryptedSecrets {
  secretCiphertext: string;
  previousSecrets: PreviousSecret[];
  /** How many of the webhook's ciphertexts were not under the current key (0: nothing to write). */
  reencrypted: number;
}

/**
 * The webhook's stored secrets with each one not already under the ring's current key
 * re-encrypted under it (a fresh IV, the same webhook id bound in), so that the key it was under
 * can leave SECRETS_KEY_PREVIOUS. Expired previous secrets are re-encrypted too: they stay in the
 * row until the next rotation drops them. Throws, like decryptSecret, if any one of them opens
 * under no key of the ring: a row is rewritten whole or not at all.
 */
export function reencryptWebhookSecrets(webhook: WebhookSecrets, keys: SecretsKeys): ReencryptedSecrets {
  const current = Buffer.isBuffer(keys) ? keys : keys.current;
  const prefix = ciphertextPrefix(current);
  let reencrypted = 0;
  const underCurrent = (ciphertext: string) => {
    if (ciphertext.startsWith(prefix)) return ciphertext;
    reencrypted += 1;
    return encryptSecret(decryptSecret(ciphertext, keys, webhook.id), current, webhook.id);
  };
  const secretCiphertext = underCurrent(webhook.secretCiphertext);
  const previousSecrets = previousSecretEntries(webhook.previousSecrets).map((entry) => ({ ...entry, ciphertext: underCurrent(entry.ciphertext) }));
  return { secretCiphertext, previousSecrets, reencrypted };
}
