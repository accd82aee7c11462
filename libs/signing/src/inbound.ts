import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * A new inbound source secret: 32 random bytes as 64 hex characters, which both GitHub's "Secret"
 * and GitLab's "Secret token" fields take as they are.
 */
export function generateSourceSecret(): string {
  return randomBytes(32).toString('hex');
}

/** What a caller-chosen source secret must be: 16 to 256 printable ASCII characters, no spaces (a header value as GitLab sends it). */
export const SOURCE_SECRET_PATTERN = /^[\x21-\x7e]{16,256}$/;

const GITHUB_SIGNATURE = /^sha256=([0-9a-fA-F]{64})$/;

/**
 * GitHub's `X-Hub-Signature-256: sha256=<hex>`: the HMAC-SHA256 of the raw body keyed with the
 * secret. The comparison is over the 32 digest bytes, in constant time; a header of any other
 * shape or length is refused before any comparison, so nothing leaks through timing or throws.
 */
export function verifyGitHubSignature(secret: string, rawBody: Buffer, header: string | undefined): boolean {
  const match = header === undefined ? null : GITHUB_SIGNATURE.exec(header);
  if (!match) return false;
  const expected = createHmac('sha256', Buffer.from(secret, 'utf8')).update(rawBody).digest();
  return timingSafeEqual(expected, Buffer.from(match[1], 'hex'));
}

/**
 * GitLab's `X-Gitlab-Token`: the secret itself. Both sides are hashed first, so that the constant-
 * time comparison is over equal-length digests and the secret's length is not revealed either.
 */
export function verifyGitLabToken(secret: string, header: string | undefined): boolean {
  if (header === undefined || header.length === 0) return false;
  const digest = (text: string) => createHash('sha256').update(text, 'utf8').digest();
  return timingSafeEqual(digest(secret), digest(header));
}
