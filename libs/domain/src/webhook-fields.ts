/** Limits of a webhook's own fields (the contract's "Webhooks"). */
export const WEBHOOK_LIMITS = {
  nameMaxLength: 100,
  maxHeaders: 20,
  headerValueMaxLength: 1024,
  secretMinBytes: 24,
  secretMaxBytes: 64,
} as const;

const HEADER_NAME = /^[A-Za-z0-9-]{1,64}$/;
const PRINTABLE_ASCII = /^[\x20-\x7E]*$/;
/**
 * Headers Bellhop sets itself, or that HTTP owns: a webhook may not set them. Beyond the contract's
 * list, the hop-by-hop and encoding headers that would make the HTTP client refuse every attempt
 * (keep-alive, upgrade, expect) or change what the body means.
 */
const RESERVED_HEADERS = new Set([
  'host',
  'content-type',
  'content-length',
  'user-agent',
  'connection',
  'transfer-encoding',
  'keep-alive',
  'upgrade',
  'expect',
  'te',
  'trailer',
  'proxy-connection',
  'content-encoding',
]);
const RESERVED_PREFIXES = ['x-bellwether-', 'webhook-'];
const OBJECT_MEMBER_NAMES = new Set([...Object.getOwnPropertyNames(Object.prototype), 'prototype'].map((name) => name.toLowerCase()));

/**
 * What is wrong with a webhook's custom request headers, or null when they may be sent with every
 * attempt: at most 20, names of letters, digits and dashes (1 to 64), values of at most 1,024
 * printable ASCII characters, none of the reserved names, no name twice in another case.
 */
export function checkWebhookHeaders(headers: unknown): string | null {
  if (typeof headers !== 'object' || headers === null || Array.isArray(headers)) return 'headers must be an object of header names to values';
  const entries = Object.entries(headers as Record<string, unknown>);
  if (entries.length > WEBHOOK_LIMITS.maxHeaders) return `headers may hold at most ${WEBHOOK_LIMITS.maxHeaders} headers`;
  const seen = new Set<string>();
  for (const [name, value] of entries) {
    if (!HEADER_NAME.test(name)) return `header name "${name.slice(0, 80)}" must be 1 to 64 letters, digits or dashes`;
    const lower = name.toLowerCase();
    if (isReservedHeader(lower)) {
      return `header "${name}" is reserved: Bellhop sets it (reserved: ${[...RESERVED_HEADERS].join(', ')}, ${RESERVED_PREFIXES.map((p) => `${p}*`).join(', ')})`;
    }
    // Names of Object.prototype's members (constructor, toString, __proto__, ...): valid in HTTP, but
    // taken for something else by the code that reads JSON; refused rather than silently dropped.
    if (OBJECT_MEMBER_NAMES.has(lower)) return `header name "${name}" is not supported`;
    if (seen.has(lower)) return `header "${name}" is given twice`;
    seen.add(lower);
    if (typeof value !== 'string' || value.length > WEBHOOK_LIMITS.headerValueMaxLength || !PRINTABLE_ASCII.test(value)) {
      return `header "${name}" must have a value of at most ${WEBHOOK_LIMITS.headerValueMaxLength} printable ASCII characters`;
    }
  }
  return null;
}

function isReservedHeader(lowerName: string): boolean {
  return RESERVED_HEADERS.has(lowerName) || RESERVED_PREFIXES.some((prefix) => lowerName.startsWith(prefix));
}

/**
 * A stored custom header that may be sent: the worker's own check, so that a row written some other
 * way than through the API can never replace a signature or break the request.
 */
export function isSendableCustomHeader(name: string, value: unknown): value is string {
  return (
    HEADER_NAME.test(name) &&
    !isReservedHeader(name.toLowerCase()) &&
    typeof value === 'string' &&
    value.length <= WEBHOOK_LIMITS.headerValueMaxLength &&
    PRINTABLE_ASCII.test(value)
  );
}

/**
 * What is wrong with a caller-chosen webhook secret, or null when it is `whsec_` followed by the
 * standard base64 of 24 to 64 bytes.
 */
export function checkWebhookSecret(secret: unknown): string | null {
  const message = `secret must be "whsec_" followed by the base64 of ${WEBHOOK_LIMITS.secretMinBytes} to ${WEBHOOK_LIMITS.secretMaxBytes} bytes`;
  if (typeof secret !== 'string' || !secret.startsWith('whsec_')) return message;
  const encoded = secret.slice('whsec_'.length);
  if (!/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(encoded)) return message;
  const decoded = Buffer.from(encoded, 'base64');
  // Canonical only (zero padding bits): strict Standard Webhooks verifiers refuse anything else.
  if (decoded.toString('base64') !== encoded) return message;
  return decoded.length >= WEBHOOK_LIMITS.secretMinBytes && decoded.length <= WEBHOOK_LIMITS.secretMaxBytes ? null : message;
}

/** A webhook's default name: its URL's host. */
export function defaultWebhookName(url: string): string {
  try {
    return new URL(url).hostname.slice(0, WEBHOOK_LIMITS.nameMaxLength) || url.slice(0, WEBHOOK_LIMITS.nameMaxLength);
  } catch {
    return url.slice(0, WEBHOOK_LIMITS.nameMaxLength);
  }
}

/** A webhook's health as the contract shows it; test deliveries never move it. */
export interface WebhookHealthView {
  status: 'healthy' | 'failing' | 'disabled';
  failingSince: string | null;
  lastSuccessAt: string | null;
  lastFailureAt: string | null;
  lastDeliveryAt: string | null;
  /** When a failing webhook will be disabled if nothing succeeds before; null otherwise. */
  autoDisableAt: string | null;
}

export function webhookHealth(
  webhook: { enabled: boolean; failingSince: Date | null; lastSuccessAt: Date | null; lastFailureAt: Date | null; lastDeliveryAt: Date | null },
  autoDisableAfterMs: number,
): WebhookHealthView {
  const iso = (date: Date | null) => (date ? date.toISOString() : null);
  const status = !webhook.enabled ? 'disabled' : webhook.failingSince ? 'failing' : 'healthy';
  return {
    status,
    failingSince: iso(webhook.failingSince),
    lastSuccessAt: iso(webhook.lastSuccessAt),
    lastFailureAt: iso(webhook.lastFailureAt),
    lastDeliveryAt: iso(webhook.lastDeliveryAt),
    autoDisableAt: status === 'failing' && webhook.failingSince ? new Date(webhook.failingSince.getTime() + autoDisableAfterMs).toISOString() : null,
  };
}
