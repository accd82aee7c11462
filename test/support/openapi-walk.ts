import type { Response, Test } from 'supertest';
import type { Stack } from './stack';

/** The id-carrying path parameters the tests know how to fill with real ids. */
export const KNOWN_PATH_PARAMS = ['orgId', 'projectId', 'webhookId', 'eventId', 'deliveryId', 'tokenId', 'userId', 'type', 'replayId', 'sourceId'] as const;
export type PathParam = (typeof KNOWN_PATH_PARAMS)[number];
export type Ids = Record<PathParam, string>;

/**
 * Routes meant to answer without a token; any other operation without `security` is a finding.
 * An inbound source's deliveries carry a signature instead of a token (the source's secret).
 */
export const PUBLIC_OPERATIONS = new Set(['POST /auth/signup', 'POST /auth/login', 'GET /event-types', 'GET /health', 'GET /health/ready', 'POST /ingest/{sourceId}']);

/** The contract's error codes and the status each one goes with. */
export const STATUS_OF_CODE: Record<string, number> = {
  bad_request: 400,
  unauthenticated: 401,
  forbidden: 403,
  plan_limit: 403,
  not_found: 404,
  conflict: 409,
  webhook_disabled: 409,
  payload_too_large: 413,
  validation_failed: 422,
  rate_limited: 429,
  internal: 500,
};

export type Method = 'get' | 'post' | 'put' | 'patch' | 'delete';
const METHODS: Method[] = ['get', 'post', 'put', 'patch', 'delete'];

export interface JsonSchema {
  $ref?: string;
  type?: string;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  items?: JsonSchema;
  enum?: unknown[];
  example?: unknown;
  format?: string;
  minimum?: number;
  maximum?: number;
  default?: unknown;
  minLength?: number;
  maxLength?: number;
  nullable?: boolean;
  additionalProperties?: boolean | JsonSchema;
}

export interface OpenApiDocument {
  paths: Record<string, Partial<Record<Method, OperationObject>>>;
  components?: { schemas?: Record<string, JsonSchema> };
}

interface OperationObject {
  operationId?: string;
  parameters?: Array<{ name: string; in: string; required?: boolean; schema?: JsonSchema }>;
  requestBody?: { content?: Record<string, { schema?: JsonSchema }> };
  security?: unknown[];
}

export interface Operation {
  method: Method;
  /** The path template, as the document writes it: `/webhooks/{webhookId}`. */
  path: string;
  /** `POST /webhooks/{webhookId}/secret/rotate`: the key of the tables below. */
  key: string;
  /** Parameters in the path template, in order (taken from the template, not from `parameters`, which may omit some). */
  pathParams: string[];
  isPublic: boolean;
  headerParams: string[];
  /** Query parameters, as the document declares them. */
  queryParams: Array<{ name: string; required: boolean; schema: JsonSchema }>;
  bodySchema: JsonSchema | null;
}

export async function fetchDocument(stack: Stack): Promise<OpenApiDocument> {
  const res = await stack.http().get('/docs-json').expect(200);
  return res.body as OpenApiDocument;
}

/** Every operation of every path of the document. */
export function operationsOf(doc: OpenApiDocument): Operation[] {
  const out: Operation[] = [];
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const method of METHODS) {
      const op = item[method];
      if (!op) continue;
      const pathParams = [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]);
      out.push({
        method,
        path,
        key: `${method.toUpperCase()} ${path}`,
        pathParams,
        isPublic: !op.security || op.security.length === 0,
        headerParams: (op.parameters ?? []).filter((p) => p.in === 'header').map((p) => p.name),
        queryParams: (op.parameters ?? []).filter((p) => p.in === 'query').map((p) => ({ name: p.name, required: p.required === true, schema: resolve(doc, p.schema ?? null) ?? {} })),
        bodySchema: resolve(doc, op.requestBody?.content?.['application/json']?.schema ?? null),
      });
    }
  }
  return out;
}

export function resolve(doc: OpenApiDocument, schema: JsonSchema | null): JsonSchema | null {
  if (!schema?.$ref) return schema;
  const name = schema.$ref.replace('#/components/schemas/', '');
  return doc.components?.schemas?.[name] ?? null;
}

/** Path parameter names the tests do not know how to fill: a new route needs the walk taught. */
export function unknownParams(ops: Operation[]): string[] {
  return [...new Set(ops.flatMap((op) => op.pathParams).filter((p) => !(KNOWN_PATH_PARAMS as readonly string[]).includes(p)))];
}

/** The path with real ids in place of its parameters. */
export function fillPath(op: Operation, ids: Partial<Ids>): string {
  return op.path.replace(/\{([^}]+)\}/g, (_, name: string) => {
    const value = ids[name as PathParam];
    if (!value) throw new Error(`no id for path parameter {${name}} of ${op.key}`);
    return encodeURIComponent(value);
  });
}

/**
 * A plausible valid value for a schema: its example, else its first enum value, else a value of
 * its type. Optional properties are filled only when the schema says what a good value is.
 */
export function sampleFromSchema(doc: OpenApiDocument, raw: JsonSchema | null): unknown {
  const schema = resolve(doc, raw);
  if (!schema) return {};
  if (schema.example !== undefined) return schema.example;
  if (schema.enum?.length) return schema.type === 'array' ? [schema.enum[0]] : schema.enum[0];
  switch (schema.type) {
    case 'array':
      return [sampleFromSchema(doc, schema.items ?? { type: 'string' })];
    case 'boolean':
      return true;
    case 'integer':
    case 'number':
      return 1;
    case 'string':
      return 'x'.repeat(Math.max(1, schema.minLength ?? 1));
    case 'object':
    default: {
      const out: Record<string, unknown> = {};
      const required = new Set(schema.required ?? []);
      for (const [name, prop] of Object.entries(schema.properties ?? {})) {
        const p = resolve(doc, prop)!;
        if (required.has(name) || p.example !== undefined || p.enum?.length || p.type === 'boolean') out[name] = sampleFromSchema(doc, p);
      }
      return out;
    }
  }
}

/** A request for `op` at `path`, with the method of the operation. */
export function requestFor(stack: Stack, op: Pick<Operation, 'method'>, path: string): Test {
  const http = stack.http();
  switch (op.method) {
    case 'get':
      return http.get(path);
    case 'post':
      return http.post(path);
    case 'put':
      return http.put(path);
    case 'patch':
      return http.patch(path);
    case 'delete':
      return http.delete(path);
  }
}

/** What is wrong with an error answer, or null when it has the contract's shape. */
export function errorShapeProblem(res: Pick<Response, 'status' | 'body' | 'headers'>): string | null {
  const body = res.body as Record<string, unknown> | undefined;
  if (!body || typeof body !== 'object' || Array.isArray(body)) return `body is not a JSON object: ${JSON.stringify(body)}`;
  const keys = Object.keys(body).sort().join(',');
  if (keys !== 'code,details,error,requestId,statusCode') return `keys are ${keys}`;
  if (body.statusCode !== res.status) return `statusCode ${String(body.statusCode)} but HTTP ${res.status}`;
  if (typeof body.error !== 'string' || body.error.length === 0) return 'error is not a message';
  if (typeof body.code !== 'string' || STATUS_OF_CODE[body.code] === undefined) return `unknown code ${String(body.code)}`;
  if (STATUS_OF_CODE[body.code] !== res.status && !(res.status === 503 && body.code === 'internal')) return `code ${body.code} with HTTP ${res.status}`;
  if (!Array.isArray(body.details)) return 'details is not an array';
  if (typeof body.requestId !== 'string' || body.requestId !== res.headers['x-request-id']) return `requestId ${String(body.requestId)} differs from X-Request-Id ${String(res.headers['x-request-id'])}`;
  if (/\bat .+\.(ts|js):\d+/.test(JSON.stringify(body))) return 'body shows a stack trace';
  return null;
}

/** One line per answer, for failure messages that say which request did what. */
export function describeAnswer(label: string, res: Pick<Response, 'status' | 'body' | 'text'>): string {
  const body = res.body && Object.keys(res.body as object).length ? JSON.stringify(res.body) : res.text;
  return `${label} -> ${res.status} ${String(body).slice(0, 300)}`;
}
