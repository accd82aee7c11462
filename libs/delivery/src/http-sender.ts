import { lookup as dnsLookup, type LookupAddress, type LookupAllOptions } from 'node:dns';
import type { LookupFunction } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import { Pool } from 'undici';
import { isPrivateAddress, literalAddress } from '@bellhop/domain';

/** The error codes an attempt can end with (the contract's `error.code`). */
export type AttemptErrorCode =
  | 'timeout'
  | 'connection_refused'
  | 'dns_failure'
  | 'blocked_address'
  | 'tls_error'
  | 'connection_reset'
  | 'network_error'
  // No request was made: the webhook's secret could not be decrypted (SECRETS_KEY changed?).
  | 'secret_unavailable';

export interface AttemptError {
  code: AttemptErrorCode;
  message: string;
}

export interface SendRequest {
  url: string;
  headers: Record<string, string>;
  body: string;
}

export interface SendResult {
  /** Null when no response status arrived (network error, timeout before headers, refused address). */
  statusCode: number | null;
  headers: Record<string, string>;
  /** At most maxBodyBytes of the response body, decoded as UTF-8; null when no response arrived. */
  body: string | null;
  bodyTruncated: boolean;
  responseTimeMs: number;
  error: AttemptError | null;
}

/** Resolves a host name to every address, like dns.lookup with `all: true`. */
export type Resolver = (hostname: string, options: LookupAllOptions, callback: (err: NodeJS.ErrnoException | null, addresses: LookupAddress[]) => void) => void;

export interface HttpSenderOptions {
  /** Total deadline of one attempt, from connect to the last byte read. */
  timeoutMs: number;
  /** Development and tests only: allow loopback, private and reserved addresses. */
  allowPrivate: boolean;
  /** Response bytes kept in memory and returned; the rest is never read. Default 64 KiB. */
  maxBodyBytes?: number;
  /** Keep-alive connections per origin. Default 32. */
  connectionsPerOrigin?: number;
  /** An origin's pool is closed after this long without a request. Default 60 s. */
  idlePoolMs?: number;
  /** DNS resolver, replaceable so tests can play a rebinding DNS server. Default dns.lookup. */
  resolver?: Resolver;
}

export const MAX_RESPONSE_BODY_BYTES = 64 * 1024;

/** Raised inside the connect lookup when a name resolves to an address webhooks may not reach. */
export class BlockedAddressError extends Error {
  readonly code = 'ERR_BLOCKED_ADDRESS';
  constructor(message: string) {
    super(message);
    this.name = 'BlockedAddressError';
  }
}

const BLOCKED_MESSAGE = 'destination is a private, loopback or reserved address';

/**
 * A `connect.lookup` that resolves every address of a name and refuses the connection when any of
 * them is private. Node hands back only the checked addresses to connect to, so a DNS answer that
 * changes between a check and the connect (rebinding) cannot slip a private address through.
 * The address itself stays out of the message: split-horizon DNS would otherwise leak internal
 * addresses to whoever owns the webhook.
 */
export function guardedLookup(resolver: Resolver = dnsLookup as unknown as Resolver): LookupFunction {
  return ((hostname: string, options: { all?: boolean; family?: number; hints?: number }, callback: (...args: unknown[]) => void) => {
    const query: LookupAllOptions = { all: true };
    if (options?.family === 4 || options?.family === 6) query.family = options.family;
    if (options?.hints !== undefined) query.hints = options.hints;
    resolver(hostname, query, (err, addresses) => {
      if (err) return callback(err);
      if (!addresses || addresses.length === 0) {
        return callback(Object.assign(new Error(`${hostname} has no addresses`), { code: 'ENOTFOUND' }));
      }
      if (addresses.some((entry) => isPrivateAddress(entry.address))) {
        return callback(new BlockedAddressError(`${hostname}: ${BLOCKED_MESSAGE}`));
      }
      if (options?.all) return callback(null, addresses);
      return callback(null, addresses[0].address, addresses[0].family);
    });
  }) as unknown as LookupFunction;
}

interface PoolEntry {
  pool: Pool;
  lastUsed: number;
  active: number;
}

/**
 * Sends one delivery attempt: a POST with undici's request() (which never follows redirects, so a
 * 3xx comes back as a plain response), under a total deadline, keeping at most maxBodyBytes of
 * the answer. One keep-alive pool per origin, because connection reuse is most of the throughput.
 */
export class HttpSender {
  private readonly timeoutMs: number;
  private readonly allowPrivate: boolean;
  private readonly maxBodyBytes: number;
  private readonly connectionsPerOrigin: number;
  private readonly idlePoolMs: number;
  private readonly lookup: LookupFunction | undefined;
  private readonly pools = new Map<string, PoolEntry>();
  private readonly reaper: NodeJS.Timeout;
  private closed = false;

  constructor(options: HttpSenderOptions) {
    this.timeoutMs = options.timeoutMs;
    this.allowPrivate = options.allowPrivate;
    this.maxBodyBytes = options.maxBodyBytes ?? MAX_RESPONSE_BODY_BYTES;
    this.connectionsPerOrigin = options.connectionsPerOrigin ?? 32;
    this.idlePoolMs = options.idlePoolMs ?? 60_000;
    this.lookup = options.allowPrivate ? undefined : guardedLookup(options.resolver);
    // Many webhooks means many origins: pools nobody used for a while are closed, not kept forever.
    this.reaper = setInterval(() => this.closeIdlePools(), Math.max(1000, Math.floor(this.idlePoolMs / 2)));
    this.reaper.unref();
  }

  async send(request: SendRequest): Promise<SendResult> {
    const started = performance.now();
    const elapsed = () => Math.round(performance.now() - started);
    const refused = (code: AttemptErrorCode, message: string): SendResult => ({
      statusCode: null,
      headers: {},
      body: null,
      bodyTruncated: false,
      responseTimeMs: elapsed(),
      error: { code, message },
    });

    if (this.closed) return refused('network_error', 'the sender is shutting down');
    let url: URL;
    try {
      url = new URL(request.url);
    } catch {
      return refused('network_error', 'invalid URL');
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return refused('network_error', `unsupported protocol ${url.protocol}`);
    if (!this.allowPrivate) {
      // undici never calls the lookup hook for an address literal, so literals are checked here.
      const literal = literalAddress(url);
      if (literal !== null && isPrivateAddress(literal)) return refused('blocked_address', BLOCKED_MESSAGE);
    }

    const entry = this.poolFor(url.origin);
    entry.active++;
    // bodyTimeout is only an idle timeout: a slowly dripped body outlives it. The signal is the total deadline.
    const signal = AbortSignal.timeout(this.timeoutMs);
    let statusCode: number | null = null;
    let headers: Record<string, string> = {};
    const chunks: Buffer[] = [];
    let kept = 0;
    let truncated = false;
    try {
      const response = await entry.pool.request({
        method: 'POST',
        path: url.pathname + url.search,
        headers: request.headers,
        body: request.body,
        signal,
        headersTimeout: this.timeoutMs,
        bodyTimeout: this.timeoutMs,
      });
      statusCode = response.statusCode;
      headers = flattenHeaders(response.headers);
      const body = response.body as unknown as Readable;
      for await (const chunk of body) {
        const buffer = chunk as Buffer;
        const room = this.maxBodyBytes - kept;
        if (buffer.length > room) {
          if (room > 0) chunks.push(buffer.subarray(0, room));
          kept += Math.max(room, 0);
          truncated = true;
          // The rest is never read: destroying the body drops the connection instead of
          // downloading megabytes into nothing, and keeps the attempt inside its deadline.
          body.destroy();
          break;
        }
        chunks.push(buffer);
        kept += buffer.length;
      }
      return {
        statusCode,
        headers,
        body: Buffer.concat(chunks).toString('utf8'),
        bodyTruncated: truncated,
        responseTimeMs: elapsed(),
        error: null,
      };
    } catch (err) {
      return {
        statusCode,
        headers,
        body: statusCode === null ? null : Buffer.concat(chunks).toString('utf8'),
        bodyTruncated: truncated,
        responseTimeMs: elapsed(),
        error: classifyError(err, signal.aborted, this.timeoutMs),
      };
    } finally {
      entry.active--;
      entry.lastUsed = Date.now();
    }
  }

  /** Closes every pool; requests in flight finish first, up to their own deadline. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.reaper);
    const pools = [...this.pools.values()].map((entry) => entry.pool);
    this.pools.clear();
    await Promise.all(pools.map((pool) => pool.close().catch(() => pool.destroy().catch(() => undefined))));
  }

  /** Nest calls this at shutdown, after the worker has stopped taking jobs. */
  onModuleDestroy(): Promise<void> {
    return this.close();
  }

  /** Number of origins with an open pool (for tests and metrics). */
  get poolCount(): number {
    return this.pools.size;
  }

  private poolFor(origin: string): PoolEntry {
    let entry = this.pools.get(origin);
    if (!entry) {
      entry = {
        pool: new Pool(origin, {
          connections: this.connectionsPerOrigin,
          pipelining: 1,
          headersTimeout: this.timeoutMs,
          bodyTimeout: this.timeoutMs,
          keepAliveTimeout: 4_000,
          keepAliveMaxTimeout: 60_000,
          connect: {
            timeout: this.timeoutMs,
            ...(this.lookup ? { lookup: this.lookup } : {}),
          },
        }),
        lastUsed: Date.now(),
        active: 0,
      };
      this.pools.set(origin, entry);
    }
    return entry;
  }

  private closeIdlePools(): void {
    const cutoff = Date.now() - this.idlePoolMs;
    for (const [origin, entry] of this.pools) {
      if (entry.active === 0 && entry.lastUsed < cutoff) {
        this.pools.delete(origin);
        entry.pool.close().catch(() => undefined);
      }
    }
  }
}

function flattenHeaders(raw: Record<string, string | string[] | undefined>): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(raw)) {
    if (value === undefined) continue;
    headers[name.toLowerCase()] = Array.isArray(value) ? value.join(', ') : value;
  }
  return headers;
}

const TIMEOUT_CODES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ETIMEDOUT']);
const DNS_CODES = new Set(['ENOTFOUND', 'EAI_AGAIN', 'EAI_FAIL', 'EAI_NODATA', 'EAI_NONAME', 'ENODATA', 'ESERVFAIL', 'ENONAME', 'EBADNAME']);
const RESET_CODES = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED']);

function isTlsCode(code: string): boolean {
  return (
    code.startsWith('ERR_TLS_') ||
    code.startsWith('ERR_SSL_') ||
    code === 'EPROTO' ||
    /CERT|SELF_SIGNED|UNABLE_TO_(GET|VERIFY)|HOSTNAME_MISMATCH/.test(code)
  );
}

/** Every error code carried by an error, its cause and (for Happy Eyeballs) its aggregated errors. */
function errorCodes(err: unknown, depth = 0): string[] {
  if (!err || typeof err !== 'object' || depth > 3) return [];
  const e = err as { code?: unknown; name?: unknown; cause?: unknown; errors?: unknown };
  const codes: string[] = [];
  if (typeof e.code === 'string') codes.push(e.code);
  if (e.name === 'TimeoutError') codes.push('ETIMEDOUT');
  codes.push(...errorCodes(e.cause, depth + 1));
  if (Array.isArray(e.errors)) for (const inner of e.errors) codes.push(...errorCodes(inner, depth + 1));
  return codes;
}

/** Maps whatever undici or Node threw onto the contract's error codes. */
export function classifyError(err: unknown, deadlineReached: boolean, timeoutMs: number): AttemptError {
  const message = truncateMessage(err instanceof Error ? err.message : String(err));
  if (deadlineReached) return { code: 'timeout', message: `no complete response within ${timeoutMs} ms` };
  const codes = errorCodes(err);
  if (codes.includes('ERR_BLOCKED_ADDRESS')) return { code: 'blocked_address', message };
  if (codes.some((code) => TIMEOUT_CODES.has(code))) return { code: 'timeout', message };
  if (codes.includes('ECONNREFUSED')) return { code: 'connection_refused', message: message || 'connection refused' };
  if (codes.some((code) => DNS_CODES.has(code))) return { code: 'dns_failure', message };
  if (codes.some(isTlsCode)) return { code: 'tls_error', message };
  if ((err as { library?: string })?.library === 'SSL routines') return { code: 'tls_error', message };
  if (codes.some((code) => RESET_CODES.has(code))) return { code: 'connection_reset', message };
  return { code: 'network_error', message: message || 'network error' };
}

function truncateMessage(message: string): string {
  return message.length > 500 ? message.slice(0, 500) : message;
}
