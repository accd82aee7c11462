import { CliError, ExitCode } from './exit-codes';

/** The contract's error shape, as every error answer carries it. */
export interface ApiErrorBody {
  statusCode: number;
  error: string;
  code: string;
  details: unknown[];
  requestId: string;
}

/** The API answered, and not with 2xx. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly body: ApiErrorBody,
    readonly retryAfter: string | null,
  ) {
    super(body.error);
  }

  get exitCode(): ExitCode {
    return this.status === 401 ? ExitCode.unauthenticated : ExitCode.failure;
  }
}

/** The API could not be reached at all: nothing was answered, so nothing can be said about the operation. */
export class NetworkError extends Error {
  readonly exitCode = ExitCode.network;
}

export type Query = Record<string, string | number | boolean | undefined | null>;

export interface RequestOptions {
  body?: unknown;
  query?: Query;
  headers?: Record<string, string>;
  /** Send the bearer token (default true); login does without. */
  auth?: boolean;
  timeoutMs?: number;
}

export interface ApiResponse<T> {
  status: number;
  body: T;
}

/**
 * The contract's HTTP calls over Node's own fetch. The deadline covers the whole exchange: the
 * longest route (a test with wait=true) answers within 35 s, so the default leaves room for it.
 */
export class ApiClient {
  constructor(
    readonly baseUrl: string,
    private readonly token: string | null,
    private readonly defaultTimeoutMs = 60_000,
  ) {}

  get hasToken(): boolean {
    return this.token !== null;
  }

  url(path: string, query: Query = {}): string {
    const url = new URL(this.baseUrl.replace(/\/+$/, '') + path);
    for (const [name, value] of Object.entries(query)) {
      if (value !== undefined && value !== null && value !== '') url.searchParams.set(name, String(value));
    }
    return url.toString();
  }

  async request<T>(method: string, path: string, options: RequestOptions = {}): Promise<ApiResponse<T>> {
    const headers: Record<string, string> = { accept: 'application/json', ...options.headers };
    if (options.auth !== false) {
      if (this.token === null) throw new CliError('Not logged in: run `bellhop login`, or set BELLHOP_TOKEN', ExitCode.unauthenticated);
      headers.authorization = `Bearer ${this.token}`;
    }
    let body: string | undefined;
    if (options.body !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(options.body);
    }
    const url = this.url(path, options.query);
    let res: Response;
    try {
      res = await fetch(url, { method, headers, body, redirect: 'manual', signal: AbortSignal.timeout(options.timeoutMs ?? this.defaultTimeoutMs) });
    } catch (err) {
      throw new NetworkError(`Could not reach the API at ${this.baseUrl}: ${describeNetworkError(err)}`);
    }
    let text: string;
    try {
      text = await res.text();
    } catch (err) {
      throw new NetworkError(`The API at ${this.baseUrl} stopped answering: ${describeNetworkError(err)}`);
    }
    if (res.status >= 200 && res.status < 300) {
      return { status: res.status, body: (text === '' ? null : parseJson(text)) as T };
    }
    throw new ApiError(res.status, errorBody(res, text), res.headers.get('retry-after'));
  }

  get<T>(path: string, query?: Query): Promise<T> {
    return this.request<T>('GET', path, { query }).then((r) => r.body);
  }

  post<T>(path: string, body?: unknown, options: Omit<RequestOptions, 'body'> = {}): Promise<T> {
    return this.request<T>('POST', path, { ...options, body }).then((r) => r.body);
  }

  patch<T>(path: string, body: unknown): Promise<T> {
    return this.request<T>('PATCH', path, { body }).then((r) => r.body);
  }

  delete(path: string): Promise<void> {
    return this.request<void>('DELETE', path).then(() => undefined);
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/**
 * The answer's own error shape when it has one; otherwise (a proxy's HTML page, a 502 from a load
 * balancer) one made up from the status, so every failure prints the same way.
 */
export function errorBody(res: { status: number; statusText: string; headers: Headers }, text: string): ApiErrorBody {
  const parsed = parseJson(text) as Partial<ApiErrorBody> | string | null;
  const requestId = res.headers.get('x-request-id') ?? '';
  if (parsed && typeof parsed === 'object' && typeof parsed.error === 'string') {
    return {
      statusCode: parsed.statusCode ?? res.status,
      error: parsed.error,
      code: parsed.code ?? `http_${res.status}`,
      details: Array.isArray(parsed.details) ? parsed.details : [],
      requestId: parsed.requestId ?? requestId,
    };
  }
  const snippet = typeof parsed === 'string' ? parsed.trim().slice(0, 200) : '';
  return { statusCode: res.status, error: snippet || res.statusText || `HTTP ${res.status}`, code: `http_${res.status}`, details: [], requestId };
}

function describeNetworkError(err: unknown): string {
  // Duck-typed: fetch's errors may come from another realm than this module's Error.
  const error = (err ?? {}) as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (error.name === 'TimeoutError') return 'no answer in time';
  return error.cause?.code ?? error.cause?.message ?? error.message ?? String(err);
}

/** The lines printed to stderr for an API error: its message, code, status and request id, then its details. */
export function formatApiError(err: ApiError): string[] {
  const { body } = err;
  const lines = [`Error: ${body.error}`, `  code: ${body.code}  status: ${err.status}${body.requestId ? `  requestId: ${body.requestId}` : ''}`];
  if (err.retryAfter) lines.push(`  retry after: ${err.retryAfter} s`);
  for (const detail of body.details) {
    if (detail && typeof detail === 'object') {
      const d = detail as Record<string, unknown>;
      const where = d.path ?? d.field;
      lines.push(`  - ${where !== undefined ? `${String(where)}: ` : ''}${String(d.message ?? JSON.stringify(detail))}`);
    } else {
      lines.push(`  - ${String(detail)}`);
    }
  }
  return lines;
}
