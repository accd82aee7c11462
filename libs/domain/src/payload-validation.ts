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
  return (validate.errors ?? []).slice(0, MAX_PROBLEMS).map(describe);
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
