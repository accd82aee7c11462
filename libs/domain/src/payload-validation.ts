import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020';
import addFormats from 'ajv-formats';
import { CUSTOM_EVENT_TYPE_LIMITS, EVENT_TYPES } from './event-types';
import { unstorableJsonProblem } from './json-values';
import { compileProblemOf } from './schema-sandbox';

/** One problem of a payload: a JSON Pointer into `data` and what is wrong there. */
export interface PayloadProblem {
  path: string;
  message: string;
}

/** Problems beyond this many are not listed: one answer stays small whatever was sent. */
const MAX_PROBLEMS = 20;

// ownProperties: a payload's keys are its own; "constructor" is not found on Object.prototype.
const ajv = new Ajv2020({ allErrors: true, strict: false, ownProperties: true });
addFormats(ajv);

/** Each built-in schema compiled once, when first needed. */
const compiled = new Map<string, ValidateFunction>();

function validatorFor(type: string): ValidateFunction | null {
  let validate = compiled.get(type);
  if (!validate) {
    const definition = EVENT_TYPES.find((t) => t.type === type);
    if (!definition) return null;
    validate = ajv.compile(definition.schema);
    compiled.set(type, validate);
  }
  return validate;
}

function describe(error: ErrorObject): PayloadProblem {
  if (error.keyword === 'required') {
    const missing = String((error.params as { missingProperty: string }).missingProperty);
    return { path: `${error.instancePath}/${missing.replaceAll('~', '~0').replaceAll('/', '~1')}`, message: 'is required' };
  }
  if (error.keyword === 'enum') {
    return { path: error.instancePath, message: `must be one of: ${(error.params as { allowedValues: unknown[] }).allowedValues.join(', ')}` };
  }
  // The root of `data` is the empty pointer, as JSON Pointer writes it.
  return { path: error.instancePath, message: error.message ?? 'is not valid' };
}

function problemsOf(validate: ValidateFunction, data: unknown): PayloadProblem[] {
  if (validate(data)) return [];
  const problems = (validate.errors ?? []).slice(0, MAX_PROBLEMS).map(describe);
  // The error list of a large invalid payload is not kept until the next call.
  validate.errors = null;
  return problems;
}

/**
 * Checks a payload's `data` against its built-in event type's schema. Returns the problems (empty
 * when it is valid); a type that is not built in has none here (see `validateCustomEventData`).
 */
export function validateEventData(type: string, data: unknown): PayloadProblem[] {
  const validate = validatorFor(type);
  return validate ? problemsOf(validate, data) : [];
}

/**
 * What is wrong with a project's own schema, or null when it is a JSON Schema (draft 2020-12) that
 * compiles: an object, at most 64 KiB as JSON, no NUL characters (Postgres cannot store them),
 * valid against the meta-schema, its references resolvable, its patterns in RE2 syntax, compiled
 * within the sandbox's limits (see schema-sandbox.ts).
 */
export async function checkCustomSchema(organizationId: string, schema: unknown): Promise<string | null> {
  if (typeof schema !== 'object' || schema === null || Array.isArray(schema)) return 'schema must be a JSON Schema object';
  const text = JSON.stringify(schema);
  if (Buffer.byteLength(text) > CUSTOM_EVENT_TYPE_LIMITS.schemaMaxBytes) return `schema must be at most ${CUSTOM_EVENT_TYPE_LIMITS.schemaMaxBytes / 1024} KiB as JSON`;
  const unstorable = unstorableJsonProblem(schema);
  if (unstorable) return `schema ${unstorable}`;
  const dialect = (schema as { $schema?: unknown }).$schema;
  if (dialect !== undefined && dialect !== 'https://json-schema.org/draft/2020-12/schema') return 'schema must be JSON Schema draft 2020-12 ($schema "https://json-schema.org/draft/2020-12/schema" or none)';
  return compileProblemOf(organizationId, schema);
}

/**
 * Keywords whose checking costs time linear in the payload, whatever the schema: each value of the
 * payload is checked by the one subschema at its place, with no branches, references, regular
 * expressions or pairwise comparisons. A schema of only these runs in the API's own thread; any
 * other (anyOf, $ref, pattern, format, uniqueItems, ...) in the sandbox.
 */
const LINEAR_KEYWORDS = new Set([
  '$schema', '$comment', 'title', 'description', 'examples', 'default', 'deprecated', 'readOnly', 'writeOnly',
  'type', 'enum', 'const', 'required',
  'properties', 'additionalProperties', 'items', 'prefixItems',
  'minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum', 'multipleOf',
  'minLength', 'maxLength', 'minItems', 'maxItems', 'minProperties', 'maxProperties',
]);

/**
 * Small, too: what one subschema checks per payload value multiplies with the payload's size
 * (every object of a 1 MiB array is checked against every property and required name its
 * subschema lists, every value against every enum member), and the schema's size and depth with
 * its compilation on the API's thread.
 */
const LINEAR_LIMITS = { maxChars: 4 * 1024, maxPerNode: 16, maxDepth: 8 } as const;

/** Whether a schema (already checked as valid) holds only keywords of linear cost, and is small. */
export function isLinearSchema(schema: unknown): boolean {
  return JSON.stringify(schema).length <= LINEAR_LIMITS.maxChars && hasOnlyLinearKeywords(schema, 0);
}

function hasOnlyLinearKeywords(schema: unknown, depth: number): boolean {
  if (typeof schema === 'boolean') return true;
  if (depth > LINEAR_LIMITS.maxDepth) return false;
  const sub = (value: unknown) => hasOnlyLinearKeywords(value, depth + 1);
  const few = (n: number) => n <= LINEAR_LIMITS.maxPerNode;
  if (typeof schema !== 'object' || schema === null || Array.isArray(schema)) return false;
  for (const [keyword, value] of Object.entries(schema)) {
    if (!LINEAR_KEYWORDS.has(keyword)) return false;
    if (keyword === 'properties') {
      if (typeof value !== 'object' || value === null || !few(Object.keys(value).length) || !Object.values(value).every(sub)) return false;
    } else if (keyword === 'additionalProperties' || keyword === 'items') {
      if (!sub(value)) return false;
    } else if (keyword === 'prefixItems') {
      if (!Array.isArray(value) || !few(value.length) || !value.every(sub)) return false;
    } else if (keyword === 'required') {
      if (!Array.isArray(value) || !few(value.length)) return false;
    } else if (keyword === 'enum') {
      if (!Array.isArray(value) || !few(value.length) || value.some((member) => typeof member === 'object' && member !== null)) return false;
    } else if (keyword === 'const') {
      if (typeof value === 'object' && value !== null) return false;
    }
  }
  return true;
}

/** In-process validators of linear schemas, most recently used last, bounded by the schemas' size. */
const linearCache = new Map<string, { validate: ValidateFunction; chars: number }>();
let linearChars = 0;
const MAX_LINEAR_CHARS = 2 * 1024 * 1024;

/** The in-process validator of a schema version, if this process compiled it (a linear schema). */
export function cachedLinearValidator(key: string): ((data: unknown) => PayloadProblem[]) | undefined {
  const entry = linearCache.get(key);
  if (!entry) return undefined;
  linearCache.delete(key);
  linearCache.set(key, entry);
  return (data) => problemsOf(entry.validate, data);
}

/**
 * Compiles a linear schema in this process (its own validator instance, so nothing of it outlives
 * the cache entry) and keeps it. Undefined for a schema that is not linear: it runs in the sandbox.
 */
export function linearValidator(key: string, schema: object): ((data: unknown) => PayloadProblem[]) | undefined {
  if (!isLinearSchema(schema)) return undefined;
  let validate: ValidateFunction;
  try {
    // Checked against the meta-schema when it was saved: not again (that would compile the meta-schema per instance).
    // The first problem only: a full list for an invalid payload is the sandbox's work (its size is
    // the payload's times the schema's).
    validate = new Ajv2020({ allErrors: false, strict: false, ownProperties: true, validateSchema: false }).compile(schema);
  } catch {
    return undefined;
  }
  const chars = JSON.stringify(schema).length;
  linearCache.set(key, { validate, chars });
  linearChars += chars;
  while (linearChars > MAX_LINEAR_CHARS && linearCache.size > 1) {
    const [oldest, entry] = linearCache.entries().next().value as [string, { chars: number }];
    linearCache.delete(oldest);
    linearChars -= entry.chars;
  }
  return cachedLinearValidator(key);
}
