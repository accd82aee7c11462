import { createHmac } from 'node:crypto';
import { standardWebhooksKey } from './secrets';

/** `sha256=<hex>`: HMAC-SHA256 of the raw body keyed with the whole secret string, as Bellwether verifies. */
export function bellwetherSignature(secret: string, body: string | Buffer): string {
  return 'sha256=' + createHmac('sha256', Buffer.from(secret, 'utf8')).update(body).digest('hex');
}

/** One Standard Webhooks signature: `v1,<base64>` over `{id}.{timestamp}.{body}`. */
export function standardWebhooksSignature(secret: string, id: string, timestampSeconds: number, body: string | Buffer): string {
  const hmac = createHmac('sha256', standardWebhooksKey(secret));
  hmac.update(`${id}.${timestampSeconds}.`);
  hmac.update(body);
  return 'v1,' + hmac.digest('base64');
}

export interface SigningInput {
  /** Valid secrets, newest first: the current one, then the previous ones during rotations (see validSecrets). */
  secrets: readonly string[];
  eventId: string;
  eventType: string;
  deliveryId: string;
  attempt: number;
  timestampSeconds: number;
  body: string;
  userAgent: string;
}

/** Every header of the wire format for one attempt. */
export function signedHeaders(input: SigningInput): Record<string, string> {
  const [current, ...previous] = input.secrets;
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'user-agent': input.userAgent,
    'x-bellwether-event': input.eventType,
    'x-bellwether-delivery': input.deliveryId,
    'x-bellwether-attempt': String(input.attempt),
    'x-bellwether-signature': bellwetherSignature(current, input.body),
    'webhook-id': input.eventId,
    'webhook-timestamp': String(input.timestampSeconds),
    'webhook-signature': input.secrets
      .map((secret) => standardWebhooksSignature(secret, input.eventId, input.timestampSeconds, input.body))
      .join(' '),
  };
  // Every previous secret still signing, not only the latest: rotating twice within a grace
  // period must not cut off a receiver that is still on the older secret.
  if (previous.length > 0) headers['x-bellwether-signature-previous'] = previous.map((secret) => bellwetherSignature(secret, input.body)).join(', ');
  return headers;
}
