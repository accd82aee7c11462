import { getServers, promises as dnsPromises, type LookupAddress, type LookupAllOptions } from 'node:dns';
import { isIP, type LookupFunction } from 'node:net';
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
  /**
   * DNS resolver, replaceable so tests can play a rebinding DNS server. Default: a c-ares resolver
   * (see aresResolver) with dnsServers and dnsTimeoutMs; never dns.lookup, which runs on libuv's
   * thread pool and lets one silent name server stall every new connection.
   */
  resolver?: Resolver;
  /** Name servers ("1.2.3.4", "[::1]:5353", "127.0.0.1:5353"). Default: the system's, dns.getServers(). */
  dnsServers?: string[];
  /** Total time to resolve a name (A and AAAA in parallel). Default: half the attempt deadline, at most 5 s. */
  dnsTimeoutMs?: number;
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
 * Raised by aresResolver when a name cannot be resolved. Its code is its own: c-ares codes such
 * as ECONNREFUSED (the name server refused) must not be mistaken for the destination's. The
 * message names the host and what went wrong, never the name servers or any address.
 */
export class DnsResolutionError extends Error {
  readonly code = 'ERR_DNS_FAILURE';
  constructor(message: string) {
    super(message);
    this.name = 'DnsResolutionError';
  }
}

export interface AresResolverOptions {
  /** Name servers; default dns.getServers() (the system's, or whatever dns.setServers() set). */
  servers?: string[];
  /** Total time for one name, both families. Default 5 s. */
  timeoutMs?: number;
}

const NOT_FOUND_CODES = new Set(['ENOTFOUND', 'ENODATA']);
const LOOPBACK: LookupAddress[] = [
  { address: '127.0.0.1', family: 4 },
  { address: '::1', family: 6 },
];

/** How long the other address family may still answer once one has (as Happy Eyeballs waits for AAAA). */
const OTHER_FAMILY_GRACE_MS = 300;

/**
 * A Resolver on c-ares (dns.promises.Resolver): its queries are non-blocking sockets on the event
 * loop, not getaddrinfo calls on libuv's 4-thread pool, so a name server that never answers
 * costs one timer per query instead of a pool thread (which crypto, zlib and fs share).
 *
 * - A and AAAA are queried in parallel; once one family has answered, the other has
 *   OTHER_FAMILY_GRACE_MS more, then only the answered, checked addresses are used (a name with
 *   only one family is fine, and a server that drops one family's queries costs 300 ms, not the
 *   deadline). The connection goes only to checked addresses.
 * - c-ares gets a per-try timeout of a quarter of the budget and 2 tries (it doubles the timeout
 *   on the retry, and Node's c-ares timer ticks at that granularity), and a timer of our own
 *   ends the resolution at the budget whatever c-ares does.
 * - c-ares does not read /etc/hosts here (resolve4/resolve6 are plain queries) and does not apply
 *   the search list: a webhook host must be a public DNS name. `localhost` and `*.localhost`
 *   (RFC 6761) are answered as loopback directly, so they keep resolving (and keep being refused
 *   unless private destinations are allowed). Address literals are returned as they are.
 */
export function aresResolver(options: AresResolverOptions = {}): Resolver {
  const timeoutMs = Math.max(1, Math.round(options.timeoutMs ?? 5000));
  const ares = new dnsPromises.Resolver({ timeout: Math.max(50, Math.floor(timeoutMs / 4)), tries: 2 });
  const servers = options.servers ?? getServers();
  if (servers.length > 0) ares.setServers(servers);

  const resolveAll = async (hostname: string, family: number | undefined): Promise<LookupAddress[]> => {
    const literal = isIP(hostname);
    if (literal) return [{ address: hostname, family: literal }];
    if (/(^|\.)localhost\.?$/i.test(hostname)) return LOOPBACK.filter((a) => !family || a.family === family);
    const queries: Array<Promise<LookupAddress[]>> = [];
    if (family !== 6) queries.push(ares.resolve4(hostname).then((list) => list.map((address) => ({ address, family: 4 }))));
    if (family !== 4) queries.push(ares.resolve6(hostname).then((list) => list.map((address) => ({ address, family: 6 }))));
    let timer: NodeJS.Timeout | undefined;
    let grace: NodeJS.Timeout | undefined;
    const deadline = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
    });
    // Each answer as it comes. Once one family has answered with addresses, the other gets a short
    // grace, then the checked addresses at hand are used: a name server that drops AAAA queries
    // must not cost every attempt the whole DNS deadline.
    const answers: Array<PromiseSettledResult<LookupAddress[]>> = [];
    const answered = new Promise<void>((resolve) => {
      let pending = queries.length;
      for (const query of queries) {
        void query
          .then(
            (value): PromiseSettledResult<LookupAddress[]> => ({ status: 'fulfilled', value }),
            (reason: unknown): PromiseSettledResult<LookupAddress[]> => ({ status: 'rejected', reason }),
          )
          .then((answer) => {
            answers.push(answer);
            pending -= 1;
            if (pending === 0) resolve();
            else if (answer.status === 'fulfilled' && answer.value.length > 0 && !grace) grace = setTimeout(resolve, OTHER_FAMILY_GRACE_MS);
          });
      }
    });
    try {
      const outcome = await Promise.race([answered, deadline]);
      const settled = [...answers];
      const addresses = settled.flatMap((r) => (r.status === 'fulfilled' ? r.value : []));
      if (addresses.length > 0) return addresses;
      if (outcome === 'timeout') throw new DnsResolutionError(`${hostname}: DNS resolution timed out after ${timeoutMs} ms`);
      const codes = settled.map((r) => (r.status === 'rejected' ? String((r.reason as { code?: unknown })?.code) : 'ENODATA'));
      if (codes.includes('ETIMEOUT')) throw new DnsResolutionError(`${hostname}: DNS resolution timed out after ${timeoutMs} ms`);
      if (codes.every((code) => NOT_FOUND_CODES.has(code))) {
        throw new DnsResolutionError(codes.includes('ENOTFOUND') ? `${hostname}: name not found (DNS)` : `${hostname}: name has no addresses (DNS)`);
      }
      const other = codes.find((code) => !NOT_FOUND_CODES.has(code)) ?? 'unknown';
      throw new DnsResolutionError(`${hostname}: DNS resolution failed (${/^E[A-Z]+$/.test(other) ? other : 'error'})`);
    } finally {
      clearTimeout(timer);
      clearTimeout(grace);
    }
  };

  return (hostname, query, callback) => {
    const family = query?.family === 4 || query?.family === 6 ? query.family : undefined;
    resolveAll(hostname, family).then(
      (addresses) => callback(null, addresses),
      (err: unknown) => callback(err instanceof DnsResolutionError ? err : new DnsResolutionError(`${hostname}: DNS resolution failed`), []),
    );
  };
}

/**
 * A `connect.lookup` that resolves every address of a name and refuses the connection when any of
 * them is private. Node hands back only the checked addresses to connect to, so a DNS answer that
 * changes between a check and the connect (rebinding) cannot slip a private address through.
 * The address itself stays out of the message: split-horizon DNS would otherwise leak internal
 * addresses to whoever owns the webhook. With allowPrivate the check is skipped (the resolver,
 * and so the thread-pool-free resolution, is the same).
 */
export function guardedLookup(resolver: Resolver = aresResolver(), allowPrivate = false): LookupFunction {
  return ((hostname: string, options: { all?: boolean; family?: number; hints?: number }, callback: (...args: unknown[]) => void) => {
    const query: LookupAllOptions = { all: true };
    if (options?.family === 4 || options?.family === 6) query.family = options.family;
    if (options?.hints !== undefined) query.hints = options.hints;
    resolver(hostname, query, (err, addresses) => {
      if (err) return callback(err);
      if (!addresses || addresses.length === 0) {
        return callback(Object.assign(new Error(`${hostname} has no addresses`), { code: 'ENOTFOUND' }));
      }
      if (!allowPrivate && addresses.some((entry) => isPrivateAddress(entry.address))) {
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
  private readonly lookup: LookupFunction;
  private readonly pools = new Map<string, PoolEntry>();
  private readonly reaper: NodeJS.Timeout;
  private closed = false;

  constructor(options: HttpSenderOptions) {
    this.timeoutMs = options.timeoutMs;
    this.allowPrivate = options.allowPrivate;
    this.maxBodyBytes = options.maxBodyBytes ?? MAX_RESPONSE_BODY_BYTES;
    this.connectionsPerOrigin = options.connectionsPerOrigin ?? 32;
    this.idlePoolMs = options.idlePoolMs ?? 60_000;
    // At most half the attempt deadline, so a silent name server is reported as dns_failure rather
    // than as the attempt's timeout (undici's connect timeout covers the lookup too).
    const dnsTimeoutMs = options.dnsTimeoutMs ?? Math.min(5000, Math.max(1, Math.floor(options.timeoutMs / 2)));
    const resolver = options.resolver ?? aresResolver({ servers: options.dnsServers, timeoutMs: dnsTimeoutMs });
    this.lookup = guardedLookup(resolver, options.allowPrivate);
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
            lookup: this.lookup,
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
  // Before the timeout codes: a DNS timeout is a dns_failure (its message says it timed out).
  if (codes.includes('ERR_DNS_FAILURE')) return { code: 'dns_failure', message };
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
