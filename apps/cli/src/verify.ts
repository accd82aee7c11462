import { timingSafeEqual } from 'node:crypto';
import { bellwetherSignature, standardWebhooksSignature } from '@bellhop/signing';

export type VerifyInput =
  | { scheme: 'bellwether'; secret: string; body: Buffer; signature: string }
  | { scheme: 'standard-webhooks'; secret: string; body: Buffer; webhookId: string; timestamp: string; signature: string };

export interface VerifyResult {
  valid: boolean;
  scheme: VerifyInput['scheme'];
  /** Which of the given signatures matched (0 = the first), or null. */
  matched: number | null;
  /** How many signatures were given. */
  candidates: number;
  reason?: string;
}

/**
 * Checks a received body the way a receiver must, offline, with the signing code the sender uses:
 * `X-Bellwether-Signature` (or the `, `-separated `X-Bellwether-Signature-Previous` list) is
 * HMAC-SHA256 of the raw bytes keyed with the whole `whsec_` string; `webhook-signature` holds
 * space-separated `v1,<base64>` entries over `{webhook-id}.{webhook-timestamp}.{body}`, keyed with
 * the base64-decoded part after `whsec_`. Any one matching entry is enough (rotations send
 * several). Comparisons are constant-time. The timestamp's age is not judged: the body may be
 * checked long after it arrived.
 */
export function verifySignature(input: VerifyInput): VerifyResult {
  if (input.scheme === 'bellwether') {
    const candidates = input.signature.split(',').map((s) => s.trim()).filter(Boolean);
    const expected = bellwetherSignature(input.secret, input.body);
    const matched = candidates.findIndex((candidate) => safeEqual(candidate, expected));
    return result(input.scheme, matched, candidates.length);
  }
  if (!/^\d+$/.test(input.timestamp)) return { valid: false, scheme: input.scheme, matched: null, candidates: 0, reason: 'webhook-timestamp must be Unix seconds' };
  const candidates = input.signature.split(' ').map((s) => s.trim()).filter(Boolean);
  const expected = standardWebhooksSignature(input.secret, input.webhookId, Number(input.timestamp), input.body);
  const matched = candidates.findIndex((candidate) => candidate.startsWith('v1,') && safeEqual(candidate, expected));
  return result(input.scheme, matched, candidates.length);
}

function result(scheme: VerifyInput['scheme'], matched: number, candidates: number): VerifyResult {
  if (candidates === 0) return { valid: false, scheme, matched: null, candidates, reason: 'no signature given' };
  return matched >= 0 ? { valid: true, scheme, matched, candidates } : { valid: false, scheme, matched: null, candidates, reason: 'no signature matches this secret and body' };
}

function safeEqual(a: string, b: string): boolean {
  const left = Buffer.from(a, 'utf8');
  const right = Buffer.from(b, 'utf8');
  return left.length === right.length && timingSafeEqual(left, right);
}
