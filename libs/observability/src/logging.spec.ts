import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { pinoHttp } from 'pino-http';
import { clientRequestIdOf, httpLogOptions, MAX_CLIENT_REQUEST_ID } from './logging';

describe('clientRequestIdOf', () => {
  it.each([
    ['a UUID', '0f8fad5b-d9cb-469f-a165-70867728950e'],
    ['a W3C traceparent', '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'],
    ['an AWS trace id', 'Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1'],
    ['printable punctuation and spaces', 'job 42 <retry #3>'],
    ['the longest kept', 'x'.repeat(MAX_CLIENT_REQUEST_ID)],
  ])('keeps %s', (_, id) => {
    expect(clientRequestIdOf(id)).toBe(id);
  });

  it.each([
    ['nothing', undefined],
    ['an empty value', ''],
    ['one character too long', 'x'.repeat(MAX_CLIENT_REQUEST_ID + 1)],
    ['a control character', 'abc\u0007def'],
    ['a line break', 'abc\ndef'],
    ['a tab', 'abc\tdef'],
    ['DEL', 'abc\u007f'],
    ['non-ASCII', 'réquest'],
    ['several values', ['a', 'b']],
  ])('drops %s', (_, id) => {
    expect(clientRequestIdOf(id as string | string[] | undefined)).toBeNull();
  });
});

describe('httpLogOptions', () => {
  let server: Server;
  const lines: Array<Record<string, unknown>> = [];

  beforeAll(async () => {
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString('utf8').split('\n')) if (line.trim()) lines.push(JSON.parse(line));
        done();
      },
    });
    const log = pinoHttp(httpLogOptions('worker', 'info'), sink);
    server = createServer((req, res) => {
      log(req, res);
      res.end('ok');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  /** One request; its answer's X-Request-Id and the log line written for it. */
  async function get(headers: Record<string, string>) {
    const before = lines.length;
    const answerId = await new Promise<string>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, path: '/health/ready', headers }, (res) => {
        res.resume();
        res.on('end', () => resolve(String(res.headers['x-request-id'])));
      });
      req.on('error', reject);
      req.end();
    });
    for (let i = 0; i < 100 && lines.length === before; i++) await new Promise((resolve) => setImmediate(resolve));
    expect(lines.length).toBe(before + 1);
    return { answerId, line: lines[lines.length - 1] };
  }

  it("logs the server's request id, with the caller's X-Request-Id beside it and never in its place", async () => {
    const { answerId, line } = await get({ 'X-Request-Id': 'client-chosen-42' });
    expect(answerId).toMatch(/^req_[0-9a-f]{32}$/);
    expect(line).toMatchObject({ requestId: answerId, clientRequestId: 'client-chosen-42', req: { id: answerId } });
  });

  it('leaves clientRequestId out when the caller sent none or one that is not kept', async () => {
    for (const headers of [{}, { 'X-Request-Id': 'y'.repeat(MAX_CLIENT_REQUEST_ID + 1) }, { 'X-Request-Id': 'caf\u00e9' }]) {
      const { answerId, line } = await get(headers as Record<string, string>);
      expect(answerId).toMatch(/^req_/);
      expect(line.requestId).toBe(answerId);
      expect(line).not.toHaveProperty('clientRequestId');
    }
  });
});
