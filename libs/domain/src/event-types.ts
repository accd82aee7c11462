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

/** The subscriptions that receive an event of this type: its name, `*` and its category's wildcard (and a source event's family's). */
export function subscriptionsOf(type: string): string[] {
  return subscriptionsFor(type, findEventType(type)?.category ?? (sourceKindOf(type) ? SOURCE_CATEGORY : defaultCategoryOf(type)));
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

/** The kinds of inbound source; each publishes its own family of types (`github.push`, `gitlab.merge_request`). */
export const SOURCE_KINDS = ['github', 'gitlab'] as const;
export type SourceKind = (typeof SOURCE_KINDS)[number];

/**
 * The category of source events, as the catalog lists them and as they are stored; no project's
 * own type may take it. `source.*` receives every source event, `github.*` and `gitlab.*` one family.
 */
export const SOURCE_CATEGORY = 'source';

/** Families of types raised by inbound sources (`github.<event>`, `gitlab.<event>`): built in, never a project's own. */
export const SOURCE_TYPE_PREFIXES: readonly string[] = SOURCE_KINDS.map((kind) => `${kind}.`);

/** The sender's own name of the event (`push`, `merge_request`), as a type can carry it within 64 characters. */
const SOURCE_EVENT_NAME = /^[a-z0-9_-]+$/;

/**
 * The type a source publishes an event as: `github.<X-GitHub-Event>`, `gitlab.<object_kind>`.
 * Null when the sender's name is missing or is not one a type name can hold.
 */
export function sourceEventType(kind: SourceKind, name: unknown): string | null {
  if (typeof name !== 'string' || !SOURCE_EVENT_NAME.test(name)) return null;
  const type = `${kind}.${name}`;
  return type.length <= CUSTOM_EVENT_TYPE_LIMITS.typeMaxLength ? type : null;
}

/** The family of a source event type (`github.push` → `github`); undefined for any other type. */
export function sourceKindOf(type: string): SourceKind | undefined {
  return SOURCE_KINDS.find((kind) => type.startsWith(`${kind}.`) && SOURCE_EVENT_NAME.test(type.slice(kind.length + 1)));
}

/** The type a test send to a family subscriber uses: `github.ping` (how GitHub itself tests a hook), `gitlab.push`; `source.*` gets GitHub's. */
export function sourceTestType(subscription: string): string | undefined {
  const kind = subscription === `${SOURCE_CATEGORY}.*` ? SOURCE_KINDS[0] : SOURCE_KINDS.find((k) => subscription === `${k}.*`);
  return kind && `${kind}.${sourceTestNames[kind]}`;
}

/** The event a test send to each family is (GitHub's own test of a hook is its ping). */
const sourceTestNames: Record<SourceKind, string> = { github: 'ping', gitlab: 'push' };

/**
 * What a test send of a source type carries (POST /webhooks/{id}/test), in the sender's own shape:
 * for GitHub the payload of its ping (how GitHub itself tests a hook), for GitLab the fields that
 * name the event. `category` is `source`, as a source publishes it. Undefined for other types.
 */
export function sourceTestEvent(type: string): { category: string; data: Record<string, unknown> } | undefined {
  const kind = sourceKindOf(type);
  if (!kind) return undefined;
  return { category: SOURCE_CATEGORY, data: sourceTestData(kind, type.slice(kind.length + 1)) };
}

/** The sender-shaped payload of a test send of `<kind>.<name>` (see sourceTestEvent). */
function sourceTestData(kind: SourceKind, name: string): Record<string, unknown> {
  return kind === 'github' ? { zen: 'Design for failure.', hook_id: 0, hook: { type: 'Repository', active: true, events: [name] } } : { object_kind: name, event_name: name };
}

/**
 * What a webhook may subscribe to among source events: all of them (`source.*`, the category), a
 * family (`github.*`) or one type by name (`github.push`), whether or not a source has raised it
 * yet: GitHub and GitLab add events of their own.
 */
export function isSourceSubscription(name: string): boolean {
  return name === `${SOURCE_CATEGORY}.*` || SOURCE_KINDS.some((kind) => name === `${kind}.*`) || (sourceKindOf(name) !== undefined && name.length <= CUSTOM_EVENT_TYPE_LIMITS.typeMaxLength);
}

/**
 * The inbound sources' families as the catalog lists them (the contract's `github.<event>` and
 * `gitlab.<event>` rows), one entry a family. Their `type` is the family's name as a webhook
 * subscribes to it, `github.*`: the events themselves are named by GitHub and GitLab, which add new
 * ones, so no list of them would be whole. The payload is the sender's, as received: the schema
 * only says it is an object, and the example is what a test send to the family carries.
 * Kept out of EVENT_TYPES, which holds the types one can publish and validate by name: nobody
 * publishes a family, and `github.*` is not the name of any event.
 */
export const SOURCE_CATALOG: readonly EventTypeDefinition[] = SOURCE_KINDS.map((kind) => ({
  type: `${kind}.*`,
  category: SOURCE_CATEGORY,
  description: kind === 'github' ? 'The GitHub payload as received (see inbound sources).' : 'The GitLab payload as received (see inbound sources).',
  schema: { $schema: SCHEMA_DIALECT, type: 'object' },
  example: sourceTestData(kind, sourceTestNames[kind]),
}));

/** What GET /event-types lists: the built-in types, then the inbound sources' families. */
export const CATALOG: readonly EventTypeDefinition[] = [...EVENT_TYPES, ...SOURCE_CATALOG];

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
export const RESERVED_CATEGORIES: readonly string[] = ['operational', SOURCE_CATEGORY, ...RESERVED_TYPE_PREFIXES.map((prefix) => prefix.slice(0, -1))];

/** A name a project cannot take for its own type: a built-in type, or one of Bellhop's namespaces. */
export function isBuiltInTypeName(type: string): boolean {
  return EVENT_TYPE_NAMES.includes(type) || RESERVED_TYPE_PREFIXES.some((prefix) => type.startsWith(prefix));
}

/** The category a project's own type gets when none is given: the part before the first dot. */
export function defaultCategoryOf(type: string): string {
  return type.split('.')[0];
}

/**
 * The subscriptions that receive an event of a type of this category: its name, `*` and
 * `<category>.*`; a source event (category `source`) also its family's, `github.*` or `gitlab.*`.
 */
export function subscriptionsFor(type: string, category: string): string[] {
  const kind = sourceKindOf(type);
  return kind && category === SOURCE_CATEGORY ? [type, '*', `${category}.*`, `${kind}.*`] : [type, '*', `${category}.*`];
}
