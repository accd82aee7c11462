import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020';
import addFormats from 'ajv-formats';
import { RE2JS } from 're2js';
import { CUSTOM_EVENT_TYPE_LIMITS, EVENT_TYPES } from './event-types';

/** One problem of a payload: a JSON Pointer into `data` and what is wrong there. */
export interface PayloadProblem {
  path: string;
  message: string;
}

/** Problems beyond this many are not listed: one answer stays small whatever was sent. */
const MAX_PROBLEMS = 20;

const ajv = new Ajv2020({ allErrors: true, strict: false });
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
 * `pattern` and `patternProperties` of a project's own schemas run on RE2 (linear time, no
 * backtracking): a tenant's regular expression cannot stall the API for everyone else. RE2 has no
 * lookaround or backreferences; a schema using them is refused as invalid when it is saved.
 */
function re2(pattern: string): { test(text: string): boolean; toString(): string } {
  const compiled = RE2JS.compile(pattern);
  return { test: (text: string) => compiled.matcher(text).find(), toString: () => `re2:${pattern}` };
}

const customAjv = new Ajv2020({ allErrors: true, strict: false, code: { regExp: re2 as never } });
addFormats(customAjv);

/**
 * Compiles a project's own schema. Everything it registered (its `$id`s) is dropped right after,
 * so that one tenant's ids never collide with or resolve into another's; the compiled function
 * keeps working. Remote references are never fetched: they fail to compile.
 */
function compileCustom(schema: object): ValidateFunction {
  try {
    return customAjv.compile(schema);
  } finally {
    customAjv.removeSchema();
  }
}

/**
 * What is wrong with a project's own schema, or null when it is a JSON Schema (draft 2020-12) that
 * compiles: an object, at most 64 KiB as JSON, valid against the meta-schema, its references
 * resolvable and its patterns in RE2 syntax.
 */
export function checkCustomSchema(schema: unknown): string | null {
  if (typeof schema !== 'object' || schema === null || Array.isArray(schema)) return 'schema must be a JSON Schema object';
  if (Buffer.byteLength(JSON.stringify(schema)) > CUSTOM_EVENT_TYPE_LIMITS.schemaMaxBytes) return `schema must be at most ${CUSTOM_EVENT_TYPE_LIMITS.schemaMaxBytes / 1024} KiB as JSON`;
  const dialect = (schema as { $schema?: unknown }).$schema;
  if (dialect !== undefined && dialect !== 'https://json-schema.org/draft/2020-12/schema') return 'schema must be JSON Schema draft 2020-12 ($schema "https://json-schema.org/draft/2020-12/schema" or none)';
  if (!ajv.validateSchema(schema)) return `schema is not a valid JSON Schema: ${ajv.errorsText(ajv.errors, { dataVar: 'schema' })}`;
  try {
    compileCustom(schema);
  } catch (error) {
    return `schema does not compile: ${(error as Error).message}`;
  }
  return null;
}

/** Compiled custom schemas, most recently used last; a changed schema has a new version, so a new key. */
const customCompiled = new Map<string, PayloadValidator>();
const MAX_CUSTOM_COMPILED = 1000;

/** A compiled schema: the problems of a payload, empty when it is valid. */
export type PayloadValidator = (data: unknown) => PayloadProblem[];

export interface CustomSchemaKey {
  projectId: string;
  type: string;
  version: number;
}

const keyOf = (key: CustomSchemaKey) => `${key.projectId}\n${key.type}\n${key.version}`;

/** The validator of a project's own schema version if this process compiled it already (and keeps it). */
export function cachedCustomValidator(key: CustomSchemaKey): PayloadValidator | undefined {
  const cacheKey = keyOf(key);
  const validator = customCompiled.get(cacheKey);
  if (validator) {
    customCompiled.delete(cacheKey);
    customCompiled.set(cacheKey, validator);
  }
  return validator;
}

/**
 * Compiles a project's own schema version once per process and keeps it while used: a changed
 * schema has a new version, so it is compiled on its first use, in every API process.
 */
export function customValidator(key: CustomSchemaKey, schema: object): PayloadValidator {
  const cached = cachedCustomValidator(key);
  if (cached) return cached;
  const validate = compileCustom(schema);
  const validator: PayloadValidator = (data) => problemsOf(validate, data);
  if (customCompiled.size >= MAX_CUSTOM_COMPILED) customCompiled.delete(customCompiled.keys().next().value as string);
  customCompiled.set(keyOf(key), validator);
  return validator;
}
