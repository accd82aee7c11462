import type { Envelope } from './envelope';
import { unstorableJsonProblem } from './json-values';

/**
 * What a webhook's receiver gets: the event's envelope (`bellwether`), a one-line summary for a
 * Slack or Discord incoming webhook, or the webhook's own JSON template rendered from the envelope.
 */
export const WEBHOOK_FORMATS = ['bellwether', 'slack', 'discord', 'template'] as const;
export type WebhookFormat = (typeof WEBHOOK_FORMATS)[number];

export const TEMPLATE_LIMITS = {
  maxBytes: 16 * 1024,
  /** Each placeholder can copy the whole payload into the body: their number bounds the body's size. */
  maxPlaceholders: 64,
  /**
   * What all placeholders of one rendering may insert, in characters: a template that copies a
   * large payload many times cannot make one publish hold hundreds of megabytes. Beyond it, a
   * placeholder renders as if its path were missing.
   */
  maxInsertedChars: 256 * 1024,
} as const;

/** `{{path}}`: dot-separated names (array items by index) into the envelope; spaces inside the braces allowed. */
const PLACEHOLDER = /\{\{\s*([A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*)\s*\}\}/g;
const WHOLE_PLACEHOLDER = /^\{\{\s*([A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*)\s*\}\}$/;
const ENVELOPE_ROOTS = ['event', 'timestamp', 'project', 'data'];

/** Strings of a template, wherever they are (values only: keys are never rendered). */
function* stringsOf(value: unknown): Generator<string> {
  if (typeof value === 'string') yield value;
  else if (Array.isArray(value)) for (const item of value) yield* stringsOf(item);
  else if (typeof value === 'object' && value !== null) for (const item of Object.values(value)) yield* stringsOf(item);
}

/**
 * What is wrong with a webhook's template, or null: a JSON object of at most 16 KiB whose
 * placeholders (at most 64) name a path under `event`, `timestamp`, `project` or `data`.
 */
export function checkTemplate(template: unknown): string | null {
  if (typeof template !== 'object' || template === null || Array.isArray(template)) return 'template must be a JSON object';
  const text = JSON.stringify(template);
  if (Buffer.byteLength(text) > TEMPLATE_LIMITS.maxBytes) return `template must be at most ${TEMPLATE_LIMITS.maxBytes / 1024} KiB as JSON`;
  const unstorable = unstorableJsonProblem(template);
  if (unstorable) return `template ${unstorable}`;
  let placeholders = 0;
  for (const text of stringsOf(template)) {
    for (const match of text.matchAll(PLACEHOLDER)) {
      placeholders += 1;
      const root = match[1].split('.')[0];
      if (!ENVELOPE_ROOTS.includes(root)) return `template placeholder {{${match[1]}}} must start with one of: ${ENVELOPE_ROOTS.join(', ')}`;
    }
  }
  if (placeholders > TEMPLATE_LIMITS.maxPlaceholders) return `template may hold at most ${TEMPLATE_LIMITS.maxPlaceholders} placeholders`;
  return null;
}

/** The value at a dotted path of the envelope, or undefined when any step is missing. */
function lookup(envelope: Envelope, path: string): unknown {
  let value: unknown = envelope;
  for (const step of path.split('.')) {
    if (typeof value !== 'object' || value === null || !Object.prototype.hasOwnProperty.call(value, step)) return undefined;
    value = (value as Record<string, unknown>)[step];
  }
  return value;
}

function asText(value: unknown): string {
  if (value === undefined || value === null) return value === null ? 'null' : '';
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/** Characters placeholders may still insert in this rendering. */
interface Budget {
  left: number;
}

function sizeOf(value: unknown): number {
  if (value === undefined || value === null) return 0;
  return typeof value === 'string' ? value.length : JSON.stringify(value).length;
}

function renderValue(value: unknown, envelope: Envelope, budget: Budget): unknown {
  if (typeof value === 'string') {
    const whole = WHOLE_PLACEHOLDER.exec(value);
    // Exactly one placeholder: the value as it is (a number stays a number); a missing path is null.
    if (whole) {
      const found = lookup(envelope, whole[1]);
      budget.left -= sizeOf(found);
      return budget.left < 0 ? null : (found ?? null);
    }
    return value.replace(PLACEHOLDER, (_match, path: string) => {
      const text = asText(lookup(envelope, path));
      budget.left -= text.length;
      return budget.left < 0 ? '' : text;
    });
  }
  if (Array.isArray(value)) return value.map((item) => renderValue(item, envelope, budget));
  if (typeof value === 'object' && value !== null) {
    // No prototype: a key named "__proto__" is an ordinary key here, as it was in the JSON.
    const out = Object.create(null) as Record<string, unknown>;
    for (const [key, item] of Object.entries(value)) out[key] = renderValue(item, envelope, budget);
    return out;
  }
  return value;
}

/**
 * Renders a template as a value, then serializes it: the body is always well-formed JSON, whatever
 * the payload holds (no text is ever spliced into JSON).
 */
export function renderTemplate(template: object, envelope: Envelope): string {
  return JSON.stringify(renderValue(template, envelope, { left: TEMPLATE_LIMITS.maxInsertedChars }));
}

const count = (value: unknown): number => (Array.isArray(value) ? value.length : 0);
const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

/** A line of text for a chat message about the event; per type where one is written, else `[<project>] <event>`. */
export function summaryOf(envelope: Envelope): string {
  // One line, whatever the payload's strings hold.
  return writeSummary(envelope).replace(/\s*[\r\n\u2028\u2029]+\s*/g, ' ');
}

function writeSummary(envelope: Envelope): string {
  const prefix = `[${envelope.project.name}]`;
  const data = (typeof envelope.data === 'object' && envelope.data !== null ? envelope.data : {}) as Record<string, any>;
  switch (envelope.event) {
    case 'baseline.uploaded':
      return `${prefix} Baseline v${data.version} uploaded: ${plural(Number(data.toolCount), 'tool')} (${data.serverName}, CLI ${data.cliVersion})`;
    case 'baseline.drift_detected': {
      const changes = (data.changes ?? {}) as Record<string, unknown>;
      const parts = [
        [count(changes.toolsAdded), 'added'],
        [count(changes.toolsRemoved), 'removed'],
        [count(changes.toolsModified), 'modified'],
      ]
        .filter(([n]) => (n as number) > 0)
        .map(([n, what]) => `${n} ${what}`);
      return `${prefix} Drift detected (${data.severity}): v${data.fromVersion} → v${data.toVersion}, ${parts.length > 0 ? parts.join(', ') : 'no tool changes'}`;
    }
    case 'baseline.security_finding': {
      const findings = Array.isArray(data.findings) ? (data.findings as Array<Record<string, unknown>>) : [];
      const order = ['critical', 'high', 'medium', 'low', 'info'];
      const bySeverity = order.map((severity) => [severity, findings.filter((f) => f.severity === severity).length] as const).filter(([, n]) => n > 0);
      return `${prefix} ${plural(findings.length, 'security finding')} in v${data.version}: ${bySeverity.map(([severity, n]) => `${n} ${severity}`).join(', ')}`;
    }
    case 'webhook.disabled':
      return `${prefix} Webhook ${data.name} (${data.url}) disabled: ${data.reason === 'gone' ? 'its endpoint answered 410 Gone' : 'it failed for too long'}`;
    case 'delivery.exhausted':
      return `${prefix} Delivery ${data.deliveryId} of ${data.event} failed after ${plural(Number(data.attempts), 'attempt')}${data.lastStatusCode ? ` (last answer ${data.lastStatusCode})` : data.lastError?.code ? ` (${data.lastError.code})` : ''}`;
    default:
      return `${prefix} ${envelope.event}`;
  }
}

/**
 * Text from a payload must not ping a whole Discord channel: "@everyone" and "@here" get a
 * zero-width space after the "@", which Discord shows as the same text without the mention.
 */
function discordSafe(text: string): string {
  return text.replace(/@(everyone|here)/g, '@\u200b$1');
}

/** Slack's mrkdwn treats &, < and > as markup: they are escaped as Slack asks. */
function slackEscape(text: string): string {
  return text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');
}

/**
 * The body a webhook of this format sends for this envelope, or null for `bellwether` (the
 * envelope itself, stored once with the event).
 */
export function renderBody(format: string, template: unknown, envelope: Envelope): string | null {
  switch (format) {
    case 'slack':
      return JSON.stringify({ text: slackEscape(summaryOf(envelope)) });
    case 'discord':
      return JSON.stringify({ content: discordSafe(summaryOf(envelope)) });
    case 'template':
      return renderTemplate((template ?? {}) as object, envelope);
    default:
      return null;
  }
}
