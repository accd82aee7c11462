import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { HttpSender, MAX_RESPONSE_BODY_BYTES, type Resolver } from './http-sender';
import { USER_AGENT } from './version';

type Handler = (req: IncomingMessage, res: ServerResponse, body: string) => void;

interface TestServer {
  url: string;
  port: number;
  hits: string[];
  connections: number;
  close(): Promise<void>;
}

async function startServer(handler: Handler): Promise<TestServer> {
  const hits: string[] = [];
  const state = { connections: 0 };
  const server: Server = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (chunk: Buffer) => parts.push(chunk));
    req.on('end', () => {
      hits.push(req.url ?? '');
      handler(req, res, Buffer.concat(parts).toString('utf8'));
    });
  });
  server.on('connection', () => state.connections++);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    hits,
    get connections() {
      return state.connections;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const request = (url: string, body = '{"event":"baseline.uploaded"}') => ({
  url,
  body,
  headers: { 'content-type': 'application/json', 'user-agent': USER_AGENT, 'x-bellwether-attempt': '1' },
});

describe('HttpSender', () => {
  const servers: TestServer[] = [];
  const senders: HttpSender[] = [];
  const server = async (handler: Handler) => {
    const s = await startServer(handler);
    servers.push(s);
    return s;
  };
  const sender = (options: Partial<ConstructorParameters<typeof HttpSender>[0]> = {}) => {
    const s = new HttpSender({ timeoutMs: 5000, allowPrivate: true, ...options });
    senders.push(s);
    return s;
  };

  afterEach(async () => {
    await Promise.all(senders.splice(0).map((s) => s.close()));
    await Promise.all(servers.splice(0).map((s) => s.close()));
  });

  it('returns the status, headers and body of a 2xx answer and sends the body and headers unchanged', async () => {
    let seen: { body: string; headers: IncomingMessage['headers']; method?: string } | undefined;
    const receiver = await server((req, res, body) => {
      seen = { body, headers: req.headers, method: req.method };
      res.writeHead(200, { 'content-type': 'text/plain', 'x-receiver': 'yes' });
      res.end('thanks');
    });
    const result = await sender().send(request(`${receiver.url}/hook?x=1`, '{"a":1}'));
    expect(result).toMatchObject({ statusCode: 200, body: 'thanks', bodyTruncated: false, error: null });
    expect(result.headers['x-receiver']).toBe('yes');
    expect(result.responseTimeMs).toBeGreaterThanOrEqual(0);
    expect(receiver.hits).toEqual(['/hook?x=1']);
    expect(seen?.method).toBe('POST');
    expect(seen?.body).toBe('{"a":1}');
    expect(seen?.headers['user-agent']).toMatch(/^Bellhop-Webhooks\/\d+\.\d+\.\d+/);
    expect(seen?.headers['x-bellwether-attempt']).toBe('1');
  });

  it('does not follow a redirect and returns the 3xx as a plain response', async () => {
    const receiver = await server((req, res) => {
      if (req.url === '/hook') {
        res.writeHead(302, { location: '/elsewhere' });
        res.end();
      } else {
        res.writeHead(200);
        res.end('followed');
      }
    });
    const result = await sender().send(request(`${receiver.url}/hook`));
    expect(result.statusCode).toBe(302);
    expect(result.error).toBeNull();
    expect(result.headers.location).toBe('/elsewhere');
    expect(receiver.hits).toEqual(['/hook']);
  });

  it('ends with a timeout at the total deadline even when the body keeps dripping', async () => {
    const timers: NodeJS.Timeout[] = [];
    const receiver = await server((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      timers.push(setInterval(() => res.write('x'), 200));
    });
    try {
      const result = await sender({ timeoutMs: 1000 }).send(request(receiver.url));
      expect(result.error?.code).toBe('timeout');
      expect(result.statusCode).toBe(200);
      expect(result.responseTimeMs).toBeGreaterThanOrEqual(950);
      expect(result.responseTimeMs).toBeLessThan(2000);
    } finally {
      timers.forEach(clearInterval);
    }
  });

  it('ends with a timeout when no headers arrive in time', async () => {
    const receiver = await server(() => undefined);
    const result = await sender({ timeoutMs: 300 }).send(request(receiver.url));
    expect(result).toMatchObject({ statusCode: null, body: null, error: { code: 'timeout' } });
    expect(result.responseTimeMs).toBeLessThan(1500);
  });

  it('keeps 64 KiB of a 10 MB answer and drops the rest', async () => {
    const chunk = Buffer.alloc(1024 * 1024, 'a');
    const receiver = await server((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': String(10 * chunk.length) });
      let sent = 0;
      const pump = () => {
        while (sent < 10) {
          sent++;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
        res.end();
      };
      pump();
    });
    const before = process.memoryUsage().rss;
    const result = await sender().send(request(receiver.url));
    expect(result.statusCode).toBe(200);
    expect(result.error).toBeNull();
    expect(result.bodyTruncated).toBe(true);
    expect(Buffer.byteLength(result.body ?? '')).toBe(MAX_RESPONSE_BODY_BYTES);
    expect(process.memoryUsage().rss - before).toBeLessThan(8 * 1024 * 1024);
  });

  it('refuses a loopback address literal without connecting when private destinations are not allowed', async () => {
    const receiver = await server((_req, res) => res.end('reached'));
    const result = await sender({ allowPrivate: false }).send(request(receiver.url));
    expect(result).toMatchObject({ statusCode: null, error: { code: 'blocked_address' } });
    expect(receiver.connections).toBe(0);
  });

  it('refuses IPv4-mapped IPv6 literals of loopback', async () => {
    const receiver = await server((_req, res) => res.end('reached'));
    const result = await sender({ allowPrivate: false }).send(request(`http://[::ffff:127.0.0.1]:${receiver.port}/`));
    expect(result.error?.code).toBe('blocked_address');
    expect(receiver.connections).toBe(0);
  });

  it('refuses a host name that resolves to loopback (localhost)', async () => {
    const receiver = await server((_req, res) => res.end('reached'));
    const result = await sender({ allowPrivate: false }).send(request(`http://localhost:${receiver.port}/`));
    expect(result).toMatchObject({ statusCode: null, error: { code: 'blocked_address' } });
    expect(result.error?.message).not.toMatch(/127\.0\.0\.1/);
    expect(receiver.connections).toBe(0);
  });

  it('refuses a host name when any of its addresses is private (rebinding)', async () => {
    const receiver = await server((_req, res) => res.end('reached'));
    const resolver: Resolver = (_host, _opts, cb) =>
      cb(null, [
        { address: '93.184.216.34', family: 4 },
        { address: '127.0.0.1', family: 4 },
      ]);
    const result = await sender({ allowPrivate: false, resolver }).send(request(`http://rebind.example:${receiver.port}/`));
    expect(result.error?.code).toBe('blocked_address');
    expect(receiver.connections).toBe(0);
  });

  it.each([
    ['::ffff:0:0:0', '::ffff:0:ffff:ffff'], // IPv4-translated
    ['64:ff9b:1::', '64:ff9b:1:ffff:ffff:ffff:ffff:ffff'], // local-use NAT64, RFC 8215
    ['5f00::', '5f00:ffff:ffff:ffff:ffff:ffff:ffff:ffff'], // SRv6 SIDs, RFC 9602
    ['3fff::', '3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff'], // documentation, RFC 9637
  ])('refuses a name resolving into %s - %s, and those literals, without connecting', async (first, last) => {
    const receiver = await server((_req, res) => res.end('reached'));
    for (const address of [first, last]) {
      const resolver: Resolver = (_host, _opts, cb) => cb(null, [{ address, family: 6 }]);
      const named = await sender({ allowPrivate: false, resolver }).send(request(`http://special.example:${receiver.port}/`));
      expect(named).toMatchObject({ statusCode: null, error: { code: 'blocked_address' } });
      const literal = await sender({ allowPrivate: false }).send(request(`http://[${address}]:${receiver.port}/`));
      expect(literal).toMatchObject({ statusCode: null, error: { code: 'blocked_address' } });
    }
    expect(receiver.connections).toBe(0);
  });

  it('reports a name that does not resolve as dns_failure', async () => {
    const resolver: Resolver = (host, _opts, cb) =>
      cb(Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' }), []);
    const result = await sender({ allowPrivate: false, resolver }).send(request('http://nowhere.example/'));
    expect(result.error?.code).toBe('dns_failure');
  });

  it('reports a closed port as connection_refused', async () => {
    const probe = await startServer(() => undefined);
    const port = probe.port;
    await probe.close();
    const result = await sender().send(request(`http://127.0.0.1:${port}/`));
    expect(result).toMatchObject({ statusCode: null, error: { code: 'connection_refused' } });
  });

  it('reports a connection dropped before any answer as connection_reset', async () => {
    const receiver = await server((req) => req.socket.destroy());
    const result = await sender().send(request(receiver.url));
    expect(result).toMatchObject({ statusCode: null, error: { code: 'connection_reset' } });
  });

  it('reports a TLS handshake failure as tls_error', async () => {
    const receiver = await server((_req, res) => res.end('plain http'));
    const result = await sender().send(request(`https://127.0.0.1:${receiver.port}/`));
    expect(result.error?.code).toBe('tls_error');
  });

  it('reuses keep-alive connections to the same origin', async () => {
    const receiver = await server((_req, res) => res.end('ok'));
    const s = sender();
    for (let i = 0; i < 10; i++) expect((await s.send(request(receiver.url))).statusCode).toBe(200);
    // A pool may open a second connection while the first is being released; it must not open one per request.
    expect(receiver.connections).toBeLessThanOrEqual(2);
    expect(s.poolCount).toBe(1);
  });
});
