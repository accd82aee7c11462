import { Worker } from 'node:worker_threads';
import type { PayloadProblem } from './payload-validation';

/**
 * Projects' own JSON Schemas are compiled and run in a worker thread with a time and a memory
 * limit. A schema is the tenant's code: one can be slow to compile (references copied inline),
 * slow to run (branches that multiply, `uniqueItems` over a large array, a long regular
 * expression over a long string) or blow the stack (a reference to itself). Run on the API's own
 * thread, one such schema would stall every tenant's requests; here it costs its own request a
 * 422, and the thread is replaced.
 *
 * Requests go to the thread one at a time, so a deadline measures that request's own work.
 */

export const SANDBOX_LIMITS = {
  /** Longest a payload's validation may take. */
  validateMs: 1_000,
  /** Longest a schema's compilation (when it is saved, or first used in a process) may take. */
  compileMs: 2_000,
  /** Heap of the thread: a schema whose compilation needs more is refused. */
  heapMb: 128,
  /** Compiled schemas kept in the thread, most recently used first. */
  cached: 1_000,
  /** Problems listed for one payload. */
  maxProblems: 20,
} as const;

/* The thread's code: plain JavaScript, so that it runs the same from the sources (tests) and from dist. */
const THREAD_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { Ajv2020 } = require(workerData.ajv);
const addFormats = require(workerData.ajvFormats).default;
const { RE2JS } = require(workerData.re2js);

// Patterns run on RE2: linear in the text, no backtracking; lookaround and backreferences do not compile.
function re2(pattern) {
  const compiled = RE2JS.compile(pattern);
  return { test: (text) => compiled.matcher(text).find(), toString: () => 're2:' + pattern };
}
// inlineRefs: false keeps a schema that references one definition many times from being copied
// out to a program many times its size.
const ajv = new Ajv2020({ allErrors: true, strict: false, ownProperties: true, inlineRefs: false, code: { regExp: re2 } });
addFormats(ajv);
const cache = new Map();

function compile(schema) {
  try {
    return ajv.compile(schema);
  } finally {
    // Nothing a tenant's schema registered ($ids) stays for another tenant's to meet.
    ajv.removeSchema();
  }
}

function describe(error) {
  if (error.keyword === 'required') {
    const missing = String(error.params.missingProperty);
    return { path: error.instancePath + '/' + missing.replaceAll('~', '~0').replaceAll('/', '~1'), message: 'is required' };
  }
  if (error.keyword === 'enum') return { path: error.instancePath, message: 'must be one of: ' + error.params.allowedValues.join(', ') };
  return { path: error.instancePath, message: error.message || 'is not valid' };
}

parentPort.on('message', (request) => {
  try {
    if (request.op === 'check') {
      if (!ajv.validateSchema(request.schema)) {
        return parentPort.postMessage({ problem: 'schema is not a valid JSON Schema: ' + ajv.errorsText(ajv.errors, { dataVar: 'schema' }) });
      }
      try {
        compile(request.schema);
      } catch (error) {
        return parentPort.postMessage({ problem: 'schema does not compile: ' + error.message });
      }
      return parentPort.postMessage({ problem: null });
    }
    let validate = cache.get(request.key);
    if (validate) {
      cache.delete(request.key);
    } else {
      if (request.schema === undefined) return parentPort.postMessage({ missing: true });
      validate = compile(request.schema);
      if (cache.size >= workerData.cached) cache.delete(cache.keys().next().value);
    }
    cache.set(request.key, validate);
    const valid = validate(request.data);
    const problems = valid ? [] : (validate.errors || []).slice(0, workerData.maxProblems).map(describe);
    // The error list of a large invalid payload is not kept until the next call.
    validate.errors = null;
    parentPort.postMessage({ problems });
  } catch (error) {
    parentPort.postMessage({ error: String(error && error.message ? error.message : error) });
  }
});
`;

type Request = { op: 'check'; schema: object } | { op: 'validate'; key: string; schema?: object; data: unknown };
type Answer = { problem: string | null } | { missing: true } | { problems: PayloadProblem[] } | { error: string };

class SandboxFailure extends Error {
  constructor(readonly reason: 'timeout' | 'crashed') {
    super(reason);
  }
}

interface Pending {
  request: Request;
  timeoutMs: number;
  resolve: (answer: Answer) => void;
  reject: (error: Error) => void;
}

class SchemaSandbox {
  private worker: Worker | null = null;
  private readonly queue: Pending[] = [];
  private current: (Pending & { timer: NodeJS.Timeout }) | null = null;

  run(request: Request, timeoutMs: number): Promise<Answer> {
    return new Promise<Answer>((resolve, reject) => {
      this.queue.push({ request, timeoutMs, resolve, reject });
      this.next();
    });
  }

  private thread(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(THREAD_SOURCE, {
      eval: true,
      workerData: {
        ajv: require.resolve('ajv/dist/2020'),
        ajvFormats: require.resolve('ajv-formats'),
        re2js: require.resolve('re2js'),
        cached: SANDBOX_LIMITS.cached,
        maxProblems: SANDBOX_LIMITS.maxProblems,
      },
      resourceLimits: { maxOldGenerationSizeMb: SANDBOX_LIMITS.heapMb, maxYoungGenerationSizeMb: 16, stackSizeMb: 4 },
    });
    worker.on('message', (answer: Answer) => {
      // A thread already replaced (timed out) may still answer: that answer is nobody's.
      if (this.worker === worker) this.settle((p) => p.resolve(answer));
    });
    // Out of memory, or any other end: the request it was on fails, the next gets a new thread.
    worker.on('error', () => this.fail(worker, 'crashed'));
    worker.on('exit', () => this.fail(worker, 'crashed'));
    // Never what keeps a process alive (after the listeners, which would take a reference again).
    worker.unref();
    this.worker = worker;
    return worker;
  }

  private next(): void {
    if (this.current || this.queue.length === 0) return;
    const pending = this.queue.shift()!;
    const worker = this.thread();
    const timer = setTimeout(() => this.fail(worker, 'timeout'), pending.timeoutMs);
    this.current = { ...pending, timer };
    worker.postMessage(pending.request);
  }

  private settle(finish: (pending: Pending) => void): void {
    const current = this.current;
    if (!current) return;
    clearTimeout(current.timer);
    this.current = null;
    finish(current);
    this.next();
  }

  private fail(worker: Worker, reason: 'timeout' | 'crashed'): void {
    if (this.worker !== worker) return;
    this.worker = null;
    void worker.terminate();
    this.settle((p) => p.reject(new SandboxFailure(reason)));
  }
}

const sandbox = new SchemaSandbox();

/**
 * What is wrong with a project's own schema that only compiling it can tell (null when it
 * compiles): valid against the meta-schema, references resolvable, patterns in RE2 syntax, and
 * compiled within the sandbox's time and memory.
 */
export async function compileProblemOf(schema: object): Promise<string | null> {
  try {
    const answer = await sandbox.run({ op: 'check', schema }, SANDBOX_LIMITS.compileMs);
    if ('problem' in answer) return answer.problem;
    if ('error' in answer) return `schema does not compile: ${answer.error}`;
    return 'schema does not compile';
  } catch (error) {
    if (error instanceof SandboxFailure) {
      return error.reason === 'timeout'
        ? `schema is too complex: compiling it took longer than ${SANDBOX_LIMITS.compileMs / 1000} s`
        : `schema is too complex: compiling it needed more than ${SANDBOX_LIMITS.heapMb} MB`;
    }
    throw error;
  }
}

/**
 * The problems of `data` under a project's own schema, `key` naming the schema's version (the
 * thread keeps it compiled). `loadSchema` is called only when the thread does not have it.
 */
export async function validateInSandbox(key: string, data: unknown, loadSchema: () => Promise<object>): Promise<PayloadProblem[]> {
  try {
    let answer = await sandbox.run({ op: 'validate', key, data }, SANDBOX_LIMITS.validateMs);
    if ('missing' in answer) answer = await sandbox.run({ op: 'validate', key, data, schema: await loadSchema() }, SANDBOX_LIMITS.validateMs + SANDBOX_LIMITS.compileMs);
    if ('problems' in answer) return answer.problems;
    if ('error' in answer) return [{ path: '', message: `the type's schema could not be evaluated on this payload: ${answer.error}` }];
    return [{ path: '', message: "the type's schema could not be evaluated on this payload" }];
  } catch (error) {
    if (error instanceof SandboxFailure) {
      return [
        {
          path: '',
          message:
            error.reason === 'timeout'
              ? `checking this payload against the type's schema took longer than ${SANDBOX_LIMITS.validateMs / 1000} s: the schema is too costly for it`
              : "checking this payload against the type's schema needed too much memory",
        },
      ];
    }
    throw error;
  }
}
