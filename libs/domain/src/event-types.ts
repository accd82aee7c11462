/**
 * The built-in event catalog served by GET /event-types. The `baseline.*` payloads are exactly
 * those of the Bellwether webhook documentation: its required fields, types and severity values,
 * as JSON Schema (draft 2020-12) with extra properties allowed, and its own examples.
 */
export interface EventTypeDefinition {
  type: string;
  category: string;
  description: string;
  schema: Record<string, unknown>;
  example: Record<string, unknown>;
  /** Raised by Bellhop itself (operational events): users cannot publish them. */
  internal?: boolean;
}

const SCHEMA_DIALECT = 'https://json-schema.org/draft/2020-12/schema';

const object = (properties: Record<string, unknown>, required: string[] = Object.keys(properties)) => ({
  type: 'object',
  properties,
  required,
  additionalProperties: true,
});
const int = (minimum?: number) => (minimum === undefined ? { type: 'integer' } : { type: 'integer', minimum });
const text = { type: 'string' };
const texts = { type: 'array', items: text };

export const EVENT_TYPES: readonly EventTypeDefinition[] = [
  {
    type: 'baseline.uploaded',
    category: 'baseline',
    description: 'A new baseline was uploaded to the project.',
    schema: { $schema: SCHEMA_DIALECT, ...object({ version: int(1), hash: text, toolCount: int(0), serverName: text, cliVersion: text }) },
    example: { version: 12, hash: 'a1b2c3d4', toolCount: 5, serverName: 'my-server', cliVersion: '0.6.0' },
  },
  {
    type: 'baseline.drift_detected',
    category: 'baseline',
    description: 'Behavioral drift was detected between baselines.',
    schema: {
      $schema: SCHEMA_DIALECT,
      ...object({
        fromVersion: int(),
        toVersion: int(),
        severity: { type: 'string', enum: ['none', 'info', 'warning', 'breaking'] },
        changes: object({ toolsAdded: texts, toolsRemoved: texts, toolsModified: texts, breakingCount: int(0), warningCount: int(0) }),
      }),
    },
    example: {
      fromVersion: 11,
      toVersion: 12,
      severity: 'breaking',
      changes: { toolsAdded: ['new_tool'], toolsRemoved: [], toolsModified: ['existing_tool'], breakingCount: 1, warningCount: 2 },
    },
  },
  {
    type: 'baseline.security_finding',
    category: 'baseline',
    description: 'Security issues were found in a baseline.',
    schema: {
      $schema: SCHEMA_DIALECT,
      ...object({
        version: int(1),
        findings: {
          type: 'array',
          minItems: 1,
          items: object({ severity: { type: 'string', enum: ['critical', 'high', 'medium', 'low', 'info'] }, category: text, tool: text, description: text }),
        },
      }),
    },
    example: {
      version: 12,
      findings: [{ severity: 'high', category: 'injection', tool: 'execute_command', description: 'Potential command injection vulnerability' }],
    },
  },
  {
    type: 'webhook.disabled',
    category: 'operational',
    description: 'Bellhop disabled a webhook of the project: its endpoint answered 410 Gone, or failed for too long.',
    internal: true,
    schema: {
      $schema: SCHEMA_DIALECT,
      ...object({
        webhookId: text,
        name: text,
        url: text,
        reason: { type: 'string', enum: ['gone', 'failing'] },
        failingSince: { type: ['string', 'null'] },
      }),
    },
    example: {
      webhookId: 'wh_01JH3Y8ZK6Q2WQ4M7N8P9R0S1T',
      name: 'hooks.example.com',
      url: 'https://hooks.example.com/bellwether',
      reason: 'failing',
      failingSince: '2026-01-10T08:00:00.000Z',
    },
  },
  {
    type: 'delivery.exhausted',
    category: 'operational',
    description: 'A delivery of the project failed its last scheduled attempt.',
    internal: true,
    schema: {
      $schema: SCHEMA_DIALECT,
      ...object({
        deliveryId: text,
        webhookId: text,
        eventId: text,
        event: text,
        attempts: int(1),
        lastStatusCode: { type: ['integer', 'null'] },
        lastError: { oneOf: [{ type: 'null' }, object({ code: text, message: text })] },
      }),
    },
    example: {
      deliveryId: 'dlv_01JH3Y8ZK6Q2WQ4M7N8P9R0S1T',
      webhookId: 'wh_01JH3Y8ZK6Q2WQ4M7N8P9R0S1T',
      eventId: 'evt_01JH3Y8ZK6Q2WQ4M7N8P9R0S1T',
      event: 'baseline.drift_detected',
      attempts: 5,
      lastStatusCode: 503,
      lastError: null,
    },
  },
];

export const EVENT_TYPE_NAMES: readonly string[] = EVENT_TYPES.map((t) => t.type);

export function findEventType(type: string): EventTypeDefinition | undefined {
  return EVENT_TYPES.find((t) => t.type === type);
}

/** Every category of the built-in catalog. */
export const EVENT_CATEGORIES: readonly string[] = [...new Set(EVENT_TYPES.map((t) => t.category))];

/**
 * What a webhook's `events` may hold: a type of the catalog, `*` (every type, present and future)
 * or `<category>.*` (every type of a category, present and future).
 */
export const SUBSCRIPTION_NAMES: readonly string[] = [...EVENT_TYPE_NAMES, '*', ...EVENT_CATEGORIES.map((c) => `${c}.*`)];

/** The subscriptions that receive an event of this type: its name, `*` and its category's wildcard. */
export function subscriptionsOf(type: string): string[] {
  return subscriptionsFor(type, findEventType(type)?.category ?? defaultCategoryOf(type));
}

/** The first built-in type that a webhook's subscriptions receive (what its test button sends by default). */
export function firstSubscribedType(subscriptions: readonly string[]): string | undefined {
  for (const subscription of subscriptions) {
    if (findEventType(subscription)) return subscription;
    const match = EVENT_TYPES.find((t) => !t.internal && subscriptionsOf(t.type).includes(subscription)) ?? EVENT_TYPES.find((t) => subscriptionsOf(t.type).includes(subscription));
    if (match) return match.type;
  }
  return undefined;
}

/** Limits and rules of a project's own event types (the contract's "Event types and publishing"). */
export const CUSTOM_EVENT_TYPE_LIMITS = {
  typeMaxLength: 64,
  categoryMaxLength: 64,
  descriptionMaxLength: 500,
  schemaMaxBytes: 64 * 1024,
  /** A project's own types: enough for any real catalog, and a bound on what one tenant stores. */
  maxPerProject: 500,
} as const;

export const CUSTOM_EVENT_TYPE_PATTERN = /^[a-z][a-z0-9_-]*(\.[a-z0-9_-]+)+$/;
export const CATEGORY_PATTERN = /^[a-z][a-z0-9_-]*$/;

/** Families of types raised by inbound sources (`github.<event>`, `gitlab.<event>`): built in, never a project's own. */
export const SOURCE_TYPE_PREFIXES: readonly string[] = ['github.', 'gitlab.'];

/**
 * Namespaces Bellhop keeps for itself: the operational types (`webhook.*`, `delivery.*`) and the
 * inbound sources' families. A project's own type named like them could pass for Bellhop's own.
 */
const RESERVED_TYPE_PREFIXES: readonly string[] = [
  ...new Set([...EVENT_TYPES.filter((t) => t.internal).map((t) => `${t.type.split('.')[0]}.`), ...SOURCE_TYPE_PREFIXES]),
];

/** The operational types, raised by Bellhop itself (their failures raise nothing further). */
export const OPERATIONAL_EVENT_TYPES: readonly string[] = EVENT_TYPES.filter((t) => t.internal).map((t) => t.type);

/** Categories a project's own type cannot join: operational events are Bellhop's, source events the sources'. */
export const RESERVED_CATEGORIES: readonly string[] = ['operational', 'source', ...RESERVED_TYPE_PREFIXES.map((prefix) => prefix.slice(0, -1))];

/** A name a project cannot take for its own type: a built-in type, or one of Bellhop's namespaces. */
export function isBuiltInTypeName(type: string): boolean {
  return EVENT_TYPE_NAMES.includes(type) || RESERVED_TYPE_PREFIXES.some((prefix) => type.startsWith(prefix));
}

/** The category a project's own type gets when none is given: the part before the first dot. */
export function defaultCategoryOf(type: string): string {
  return type.split('.')[0];
}

/** The subscriptions that receive an event of a type of this category: its name, `*` and `<category>.*`. */
export function subscriptionsFor(type: string, category: string): string[] {
  return [type, '*', `${category}.*`];
}
