import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020';
import addFormats from 'ajv-formats';
import { EVENT_TYPES } from './event-types';

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

/**
 * Checks a payload's `data` against its event type's schema. Returns the problems (empty when it
 * is valid); a type without a schema here (not built in) has none.
 */
export function validateEventData(type: string, data: unknown): PayloadProblem[] {
  const validate = validatorFor(type);
  if (!validate || validate(data)) return [];
  return (validate.errors ?? []).slice(0, MAX_PROBLEMS).map(describe);
}
