import { decryptSecret } from './secrets';

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
export function validSecrets(webhook: WebhookSecrets, key: Buffer, now: Date = new Date()): string[] {
  const secrets = [decryptSecret(webhook.secretCiphertext, key, webhook.id)];
  for (const entry of previousSecretEntries(webhook.previousSecrets)) {
    if (Date.parse(entry.expiresAt) > now.getTime()) secrets.push(decryptSecret(entry.ciphertext, key, webhook.id));
  }
  return secrets;
}
