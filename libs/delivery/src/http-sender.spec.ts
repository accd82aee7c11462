import { scrypt } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
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

/**
 * A tiny UDP DNS server on 127.0.0.1: names in `records` get their A/AAAA answers (NOERROR with no
 * answer for a missing family), names in `hang` are never answered, anything else is NXDOMAIN.
 */
interface TestDns {
  server: string;
  queries: string[];
  close(): Promise<void>;
}

async function startDns(records: Record<string, { a?: string[]; aaaa?: string[] }>, hang: string[]): Promise<TestDns> {
  const socket: Socket = createSocket('udp4');
  const queries: string[] = [];
  socket.on('message', (msg, peer) => {
    // Question: labels from offset 12, then QTYPE and QCLASS.
    const labels: string[] = [];
    let offset = 12;
    while (msg[offset] !== 0) {
      labels.push(msg.subarray(offset + 1, offset + 1 + msg[offset]).toString('latin1'));
      offset += msg[offset] + 1;
    }
    const questionEnd = offset + 5;
    const name = labels.join('.').toLowerCase();
    const type = msg.readUInt16BE(offset + 1);
    queries.push(`${name}/${type === 28 ? 'AAAA' : type === 1 ? 'A' : type}`);
    // A hanging name gets no answer at all; `name/AAAA` hangs only that family's queries.
    if (hang.includes(name) || hang.includes(`${name}/${type === 28 ? 'AAAA' : 'A'}`)) return;
    const record = records[name];
    const answers = record ? ((type === 1 ? record.a : type === 28 ? record.aaaa : undefined) ?? []) : [];
    const header = Buffer.alloc(12);
    msg.copy(header, 0, 0, 2); // id
    header.writeUInt16BE(record ? 0x8180 : 0x8183, 2); // response, RD, RA; NXDOMAIN for unknown names
    header.writeUInt16BE(1, 4);
    header.writeUInt16BE(answers.length, 6);
    const rrs = answers.map((address) => {
      const rdata = type === 1 ? Buffer.from(address.split('.').map(Number)) : ipv6Bytes(address);
      const rr = Buffer.alloc(12);
      rr.writeUInt16BE(0xc00c, 0); // pointer to the question's name
      rr.writeUInt16BE(type, 2);
      rr.writeUInt16BE(1, 4); // IN
      rr.writeUInt32BE(1, 6); // TTL
      rr.writeUInt16BE(rdata.length, 10);
      return Buffer.concat([rr, rdata]);
    });
    socket.send(Buffer.concat([header, msg.subarray(12, questionEnd), ...rrs]), peer.port, peer.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  return {
    server: `127.0.0.1:${socket.address().port}`,
    queries,
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}

function ipv6Bytes(address: string): Buffer {
  const [head, tail = ''] = address.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = address.includes('::') ? [...h, ...Array(8 - h.length - t.length).fill('0'), ...t] : h;
  const bytes = Buffer.alloc(16);
  groups.forEach((g, i) => bytes.writeUInt16BE(parseInt(g, 16), i * 2));
  return bytes;
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

  describe('DNS resolution (c-ares, off the thread pool)', () => {
    const DNS_TIMEOUT_MS = 500;
    let dns: TestDns;

    beforeAll(async () => {
      dns = await startDns(
        {
          'answers.test': { a: ['127.0.0.1'] },
          'v6only.test': { aaaa: ['::1'] },
          'mixed.test': { a: ['93.184.216.34'], aaaa: ['::1'] },
          'public.test': { a: ['93.184.216.34'] },
          'noaaaa.test': { a: ['127.0.0.1'] },
        },
        ['hangs.test', ...Array.from({ length: 8 }, (_, i) => `hangs${i}.test`), 'noaaaa.test/AAAA'],
      );
    });
    afterAll(() => dns.close());

    const dnsSender = (options: Partial<ConstructorParameters<typeof HttpSender>[0]> = {}) =>
      sender({ dnsServers: [dns.server], dnsTimeoutMs: DNS_TIMEOUT_MS, ...options });

    it('resolves a name through the configured server and connects to the checked address', async () => {
      const receiver = await server((_req, res) => res.end('ok'));
      const result = await dnsSender().send(request(`http://answers.test:${receiver.port}/hook`));
      expect(result).toMatchObject({ statusCode: 200, body: 'ok', error: null });
      expect(dns.queries).toEqual(expect.arrayContaining(['answers.test/A', 'answers.test/AAAA']));
    });

    it('connects with the addresses of one family soon after it answers when the other family never does', async () => {
      const receiver = await server((_req, res) => res.end('ok'));
      const started = performance.now();
      const result = await dnsSender().send(request(`http://noaaaa.test:${receiver.port}/hook`));
      expect(result).toMatchObject({ statusCode: 200, error: null });
      // The A answer, then a grace of 300 ms for AAAA: well before the DNS deadline.
      expect(performance.now() - started).toBeLessThan(DNS_TIMEOUT_MS + 300);
    });

    it('ends an attempt to a name whose server never answers with dns_failure within the DNS timeout', async () => {
      const started = performance.now();
      const result = await dnsSender().send(request('http://hangs.test:9/hook'));
      const took = performance.now() - started;
      expect(result).toMatchObject({ statusCode: null, body: null, error: { code: 'dns_failure' } });
      expect(result.error?.message).toMatch(/timed out/);
      expect(result.error?.message).not.toContain('127.0.0.1');
      expect(took).toBeGreaterThanOrEqual(DNS_TIMEOUT_MS - 50);
      expect(took).toBeLessThan(DNS_TIMEOUT_MS + 400);
    });

    it('does not let 20 hanging resolutions delay a name that answers or an address literal', async () => {
      const receiver = await server((_req, res) => res.end('ok'));
      const s = dnsSender();
      const hanging = Array.from({ length: 20 }, (_, i) => s.send(request(`http://hangs.test:${9000 + i}/hook`)));
      await new Promise((resolve) => setTimeout(resolve, 50)); // the queries are out
      const named = await s.send(request(`http://answers.test:${receiver.port}/named`));
      const literal = await s.send(request(`http://127.0.0.1:${receiver.port}/literal`));
      expect(named).toMatchObject({ statusCode: 200, error: null });
      expect(literal).toMatchObject({ statusCode: 200, error: null });
      expect(named.responseTimeMs).toBeLessThan(200);
      expect(literal.responseTimeMs).toBeLessThan(200);
      const results = await Promise.all(hanging);
      expect(results.every((r) => r.error?.code === 'dns_failure')).toBe(true);
    });

    it('leaves the thread pool free: scrypt and fs complete promptly while 8 resolutions hang', async () => {
      const s = dnsSender();
      const hanging = Array.from({ length: 8 }, (_, i) => s.send(request(`http://hangs${i}.test/hook`)));
      await new Promise((resolve) => setTimeout(resolve, 50));
      const started = performance.now();
      await Promise.all([
        new Promise<void>((resolve, reject) => scrypt('secret', 'salt', 32, (err) => (err ? reject(err) : resolve()))),
        new Promise<void>((resolve, reject) => scrypt('secret', 'pepper', 32, (err) => (err ? reject(err) : resolve()))),
        readFile(__filename),
      ]);
      expect(performance.now() - started).toBeLessThan(200);
      expect((await Promise.all(hanging)).map((r) => r.error?.code)).toEqual(Array(8).fill('dns_failure'));
    });

    it('reports a name that does not exist (NXDOMAIN for A and AAAA) as dns_failure, naming nothing but the host', async () => {
      const result = await dnsSender({ allowPrivate: false }).send(request('http://nowhere.test/hook'));
      expect(result).toMatchObject({ statusCode: null, error: { code: 'dns_failure' } });
      expect(result.error?.message).toBe('nowhere.test: name not found (DNS)');
    });

    it('accepts a name with only an AAAA record', async () => {
      const receiver = await startServerOn('::1', (_req, res) => res.end('v6'));
      const result = await dnsSender().send(request(`http://v6only.test:${receiver.port}/`));
      expect(result).toMatchObject({ statusCode: 200, body: 'v6', error: null });
    });

    it('reports a name resolving to a private address as blocked_address without connecting or leaking it', async () => {
      const receiver = await server((_req, res) => res.end('reached'));
      const s = dnsSender({ allowPrivate: false });
      for (const host of ['answers.test', 'mixed.test']) {
        const result = await s.send(request(`http://${host}:${receiver.port}/`));
        expect(result).toMatchObject({ statusCode: null, error: { code: 'blocked_address' } });
        expect(result.error?.message).not.toMatch(/127\.0\.0\.1|::1/);
      }
      expect(receiver.connections).toBe(0);
    });

    it('answers localhost as loopback without asking the name server', async () => {
      const receiver = await server((_req, res) => res.end('local'));
      const result = await dnsSender().send(request(`http://localhost:${receiver.port}/`));
      expect(result).toMatchObject({ statusCode: 200, body: 'local', error: null });
      expect(dns.queries.some((q) => q.startsWith('localhost'))).toBe(false);
    });

    async function startServerOn(host: string, handler: Handler): Promise<{ port: number }> {
      const srv = createServer((req, res) => {
        req.resume();
        req.on('end', () => handler(req, res, ''));
      });
      await new Promise<void>((resolve) => srv.listen(0, host, resolve));
      servers.push({
        url: '',
        port: 0,
        hits: [],
        connections: 0,
        close: () =>
          new Promise<void>((resolve) => {
            srv.closeAllConnections();
            srv.close(() => resolve());
          }),
      });
      return { port: (srv.address() as AddressInfo).port };
    }
  });
});
