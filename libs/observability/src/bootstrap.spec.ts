import { createServer, Server } from 'node:http';
import { AddressInfo, connect, Socket } from 'node:net';
import { applyHttpTimeouts } from './bootstrap';

/** A raw connection, and when it was answered and closed (ms after it opened). */
function rawClient(port: number, firstBytes: string) {
  const opened = Date.now();
  const socket: Socket = connect(port, '127.0.0.1', () => socket.write(firstBytes));
  let received = '';
  const answered = new Promise<{ at: number; statusLine: string }>((resolve) => {
    socket.once('data', (chunk) => resolve({ at: Date.now() - opened, statusLine: chunk.toString('latin1').split('\r\n')[0] }));
  });
  socket.on('data', (chunk) => (received += chunk.toString('latin1')));
  const closed = new Promise<number>((resolve) => socket.once('close', () => resolve(Date.now() - opened)));
  return { socket, answered, closed, received: () => received };
}

describe('applyHttpTimeouts', () => {
  let server: Server;
  let port: number;
  beforeAll(async () => {
    server = createServer((req, res) => {
      req.resume();
      req.on('end', () => res.end('ok'));
    });
    applyHttpTimeouts(server, { requestMs: 1800, headersMs: 1200, keepAliveMs: 1000 });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('answers 408 to a client that never finishes its headers, within the headers timeout (not Node\'s 30 s check)', async () => {
    const client = rawClient(port, 'GET / HTTP/1.1\r\nHost: x\r\n');
    const { at, statusLine } = await client.answered;
    expect(statusLine).toBe('HTTP/1.1 408 Request Timeout');
    expect(at).toBeGreaterThanOrEqual(1100);
    expect(at).toBeLessThan(1700);
    await client.closed;
  });

  it('answers 408 to a client that sends its headers but never its whole body, within the request timeout', async () => {
    const client = rawClient(port, 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc');
    const { at, statusLine } = await client.answered;
    expect(statusLine).toBe('HTTP/1.1 408 Request Timeout');
    expect(at).toBeGreaterThanOrEqual(1700);
    expect(at).toBeLessThan(2400);
  });

  it('announces the keep-alive timeout, and closes an idle connection only after it', async () => {
    const client = rawClient(port, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    expect((await client.answered).statusLine).toBe('HTTP/1.1 200 OK');
    const closedAt = await client.closed;
    expect(client.received()).toMatch(/\r\nKeep-Alive: timeout=1\r\n/);
    // Node 20 keeps the socket a second past the timeout it announces, so that a client that
    // trusts the announcement never races the close.
    expect(closedAt).toBeGreaterThanOrEqual(950);
    expect(closedAt).toBeLessThan(2600);
  });
});
