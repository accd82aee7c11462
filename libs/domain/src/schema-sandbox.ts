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
  /** Longest the validation of one request's payloads of one type may take. */
  validateMs: 1_000,
  /** Longest a schema's compilation (when it is saved, or first used in a thread) may take. */
  compileMs: 2_000,
  /** Threads: one organization never holds more than one, so the others always find one free. */
  threads: 2,
  /** Heap of each thread: a schema whose compilation needs more is refused. */
  heapMb: 128,
  /** Compiled schemas a thread keeps, by the size of their JSON text (compiled, about 20 times that). */
  cachedSchemaChars: 2 * 1024 * 1024,
  /** Problems listed for one payload. */
  maxProblems: 20,
  /**
   * Requests of one organization waiting for a thread; beyond it, 429. Room for an integration
   * publishing from many connections at once (each request is already in memory as a request).
   */
  queuedPerOrganization: 256,
  /** Longest a request may wait for a thread; beyond it, 429. */
  queueWaitMs: 10_000,
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
const options = { allErrors: true, strict: false, ownProperties: true, inlineRefs: false, code: { regExp: re2 } };
// One instance checks schemas against the meta-schema (it keeps nothing of them).
const meta = new Ajv2020(options);
// Each schema gets an instance of its own: ajv keeps every function it compiled for as long as its
// instance lives, so a shared one would grow with every schema ever compiled. Its $id values meet no
// other tenant's either.
function compile(schema) {
  // Checked against the meta-schema by \`meta\` first: not again per instance.
  const ajv = new Ajv2020({ ...options, validateSchema: false });
  addFormats(ajv);
  return ajv.compile(schema);
}
// key -> { validate, chars }, most recently used last, bounded by the schemas' size.
const cache = new Map();
let cachedChars = 0;
function keep(key, validate, chars) {
  const old = cache.get(key);
  if (old) { cache.delete(key); cachedChars -= old.chars; }
  cache.set(key, { validate, chars });
  cachedChars += chars;
  while (cachedChars > workerData.cachedSchemaChars && cache.size > 1) {
    const [oldest, entry] = cache.entries().next().value;
    cache.delete(oldest);
    cachedChars -= entry.chars;
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

// Ready once the meta-schema is compiled: a request's deadline never pays for the thread's start.
meta.validateSchema({ type: 'object' });
parentPort.postMessage({ ready: true });

parentPort.on('message', (request) => {
  try {
    if (request.op === 'check') {
      if (!meta.validateSchema(request.schema)) {
        return parentPort.postMessage({ problem: 'schema is not a valid JSON Schema: ' + meta.errorsText(meta.errors, { dataVar: 'schema' }) });
      }
      try {
        compile(request.schema);
      } catch (error) {
        return parentPort.postMessage({ problem: 'schema does not compile: ' + error.message });
      }
      return parentPort.postMessage({ problem: null });
    }
    let entry = cache.get(request.key);
    if (!entry) {
      // Not compiled in this thread: the caller sends the schema with the payloads the second time.
      if (request.schema === undefined) return parentPort.postMessage({ missing: true });
      entry = { validate: compile(request.schema), chars: JSON.stringify(request.schema).length };
    }
    keep(request.key, entry.validate, entry.chars);
    const validate = entry.validate;
    const problems = request.items.map((data) => {
      const valid = validate(data);
      const found = valid ? [] : (validate.errors || []).slice(0, workerData.maxProblems).map(describe);
      // The error list of a large invalid payload is not kept until the next call.
      validate.errors = null;
      return found;
    });
    parentPort.postMessage({ problems });
  } catch (error) {
    parentPort.postMessage({ error: String(error && error.message ? error.message : error) });
  }
});
`;

type Request = { op: 'check'; schema: object } | { op: 'validate'; key: string; items: unknown[]; schema?: object };
type Answer = { problem: string | null } | { missing: true } | { problems: PayloadProblem[][] } | { error: string };

/** Why the sandbox could not answer: the request's own time ran out, its thread ended, or it waited too long for one. */
export class SandboxFailure extends Error {
  constructor(readonly reason: 'timeout' | 'crashed' | 'busy') {
    super(reason);
  }
}

interface Pending {
  organizationId: string;
  request: Request;
  timeoutMs: number;
  queuedAt: number;
  resolve: (answer: Answer) => void;
  reject: (error: Error) => void;
}

interface Slot {
  worker: Worker | null;
  /** The thread has loaded its modules and compiled the meta-schema. */
  ready: boolean;
  current: (Pending & { timer: NodeJS.Timeout | null }) | null;
}

/** Longest a new thread may take to be ready before it counts as crashed. */
const THREAD_START_MS = 15_000;

/**
 * A small pool of threads fed fairly: each organization has its own queue, served in turn, and
 * one organization runs on at most one thread at a time. So one tenant's costly schemas delay
 * another tenant's checks by at most one request's deadline.
 */
class SchemaSandbox {
  private readonly slots: Slot[] = Array.from({ length: SANDBOX_LIMITS.threads }, () => ({ worker: null, ready: false, current: null }));
  private readonly queues = new Map<string, Pending[]>();
  /** Organizations with queued requests, in the order they are served. */
  private readonly turn: string[] = [];

  run(organizationId: string, request: Request, timeoutMs: number): Promise<Answer> {
    return new Promise<Answer>((resolve, reject) => {
      const queue = this.queues.get(organizationId) ?? [];
      if (queue.length >= SANDBOX_LIMITS.queuedPerOrganization) {
        reject(new SandboxFailure('busy'));
        return;
      }
      queue.push({ organizationId, request, timeoutMs, queuedAt: Date.now(), resolve, reject });
      if (!this.queues.has(organizationId)) {
        this.queues.set(organizationId, queue);
        this.turn.push(organizationId);
      }
      this.dispatch();
    });
  }

  private running(organizationId: string): boolean {
    return this.slots.some((slot) => slot.current?.organizationId === organizationId);
  }

  /** The next request to run: the first organization in turn that has none running. */
  private take(): Pending | undefined {
    for (let i = 0; i < this.turn.length; i += 1) {
      const organizationId = this.turn[i];
      if (this.running(organizationId)) continue;
      const queue = this.queues.get(organizationId)!;
      const pending = queue.shift()!;
      this.turn.splice(i, 1);
      if (queue.length > 0) this.turn.push(organizationId);
      else this.queues.delete(organizationId);
      return pending;
    }
    return undefined;
  }

  private dispatch(): void {
    for (const slot of this.slots) {
      while (!slot.current) {
        const pending = this.take();
        if (!pending) return;
        if (Date.now() - pending.queuedAt > SANDBOX_LIMITS.queueWaitMs) {
          pending.reject(new SandboxFailure('busy'));
          continue;
        }
        try {
          const worker = this.thread(slot);
          slot.current = { ...pending, timer: null };
          worker.postMessage(pending.request);
          if (slot.ready) this.startClock(slot, worker);
        } catch {
          // No thread could be started (or the message could not be sent): this request fails, the next tries again.
          if (slot.current?.timer) clearTimeout(slot.current.timer);
          slot.current = null;
          this.replace(slot);
          pending.reject(new SandboxFailure('crashed'));
        }
      }
    }
  }

  /**
   * The request's deadline, from when its thread is ready. Checked on the next turn of the loop,
   * so that an answer that arrived while this thread was busy elsewhere is taken first.
   */
  private startClock(slot: Slot, worker: Worker): void {
    const current = slot.current;
    if (!current || current.timer) return;
    const timer = setTimeout(() => setImmediate(() => slot.current?.timer === timer && this.fail(slot, worker, 'timeout')), current.timeoutMs);
    current.timer = timer;
  }

  private thread(slot: Slot): Worker {
    if (slot.worker) return slot.worker;
    const worker = new Worker(THREAD_SOURCE, {
      eval: true,
      workerData: {
        ajv: require.resolve('ajv/dist/2020'),
        ajvFormats: require.resolve('ajv-formats'),
        re2js: require.resolve('re2js'),
        cachedSchemaChars: SANDBOX_LIMITS.cachedSchemaChars,
        maxProblems: SANDBOX_LIMITS.maxProblems,
      },
      resourceLimits: { maxOldGenerationSizeMb: SANDBOX_LIMITS.heapMb, maxYoungGenerationSizeMb: 16, stackSizeMb: 4 },
    });
    const starting = setTimeout(() => this.fail(slot, worker, 'crashed'), THREAD_START_MS);
    starting.unref();
    worker.on('message', (answer: Answer | { ready: true }) => {
      // A thread already replaced (timed out) may still answer: that answer is nobody's.
      if (slot.worker !== worker) return;
      if ('ready' in answer) {
        clearTimeout(starting);
        slot.ready = true;
        this.startClock(slot, worker);
        return;
      }
      this.settle(slot, (p) => p.resolve(answer));
    });
    // Out of memory, or any other end: the request it was on fails, the next gets a new thread.
    worker.on('error', () => this.fail(slot, worker, 'crashed'));
    worker.on('exit', () => this.fail(slot, worker, 'crashed'));
    // Never what keeps a process alive (after the listeners, which would take a reference again).
    worker.unref();
    slot.worker = worker;
    slot.ready = false;
    return worker;
  }

  private settle(slot: Slot, finish: (pending: Pending) => void): void {
    const current = slot.current;
    if (!current) return;
    if (current.timer) clearTimeout(current.timer);
    slot.current = null;
    finish(current);
    this.dispatch();
  }

  private replace(slot: Slot): void {
    const worker = slot.worker;
    slot.worker = null;
    slot.ready = false;
    if (worker) void worker.terminate().catch(() => undefined);
  }

  private fail(slot: Slot, worker: Worker, reason: 'timeout' | 'crashed'): void {
    if (slot.worker !== worker) return;
    this.replace(slot);
    this.settle(slot, (p) => p.reject(new SandboxFailure(reason)));
  }
}

const sandbox = new SchemaSandbox();

const busyMessage = `too many schema checks of this organization are waiting: retry shortly`;

/**
 * What is wrong with a project's own schema that only compiling it can tell (null when it
 * compiles): valid against the meta-schema, references resolvable, patterns in RE2 syntax, and
 * compiled within the sandbox's time and memory. Throws SandboxFailure('busy') when the
 * organization has too many checks waiting.
 */
export async function compileProblemOf(organizationId: string, schema: object): Promise<string | null> {
  try {
    const answer = await sandbox.run(organizationId, { op: 'check', schema }, SANDBOX_LIMITS.compileMs);
    if ('problem' in answer) return answer.problem;
    if ('error' in answer) return `schema does not compile: ${answer.error}`;
    return 'schema does not compile';
  } catch (error) {
    if (error instanceof SandboxFailure && error.reason !== 'busy') {
      return error.reason === 'timeout'
        ? `schema is too complex: compiling it took longer than ${SANDBOX_LIMITS.compileMs / 1000} s`
        : `schema is too complex: compiling it ended its sandbox (more than ${SANDBOX_LIMITS.heapMb} MB?)`;
    }
    throw error;
  }
}

/**
 * The problems of each payload of `items` under one of a project's own schemas, `key` naming the
 * schema's version (a thread keeps it compiled). `loadSchema` is called only when the thread does
 * not have it. Throws SandboxFailure('busy') when the organization has too many checks waiting.
 */
export async function validateInSandbox(organizationId: string, key: string, items: unknown[], loadSchema: () => Promise<object>): Promise<PayloadProblem[][]> {
  const all = (problem: PayloadProblem) => items.map(() => [problem]);
  try {
    let answer = await sandbox.run(organizationId, { op: 'validate', key, items }, SANDBOX_LIMITS.validateMs);
    // Not compiled in the thread that took it: schema and payloads together, compiled and checked
    // in one request (whichever thread it lands on).
    if ('missing' in answer) answer = await sandbox.run(organizationId, { op: 'validate', key, items, schema: await loadSchema() }, SANDBOX_LIMITS.compileMs + SANDBOX_LIMITS.validateMs);
    if ('problems' in answer) return answer.problems;
    if ('error' in answer) return all({ path: '', message: `the type's schema could not be evaluated on this payload: ${answer.error}` });
    return all({ path: '', message: "the type's schema could not be evaluated on this payload" });
  } catch (error) {
    if (error instanceof SandboxFailure && error.reason !== 'busy') {
      return all({
        path: '',
        message:
          error.reason === 'timeout'
            ? `checking the payload against the type's schema took longer than ${SANDBOX_LIMITS.validateMs / 1000} s: the schema is too costly for it`
            : "checking the payload against the type's schema ended its sandbox (too much memory?)",
      });
    }
    throw error;
  }
}

export { busyMessage as SANDBOX_BUSY_MESSAGE };
