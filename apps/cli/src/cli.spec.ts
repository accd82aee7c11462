import { createHmac } from 'node:crypto';
import { createServer, Server } from 'node:http';
import { AddressInfo } from 'node:net';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCaptured } from './testing';

/** The program in this process, with captured streams and an environment of its own. */
const bellhop = runCaptured;

describe('bellhop command line', () => {
  let dir: string;
  let env: NodeJS.ProcessEnv;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'bellhop-cli-'));
    env = { HOME: dir, XDG_CONFIG_HOME: join(dir, 'config') };
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('documents the exit codes in --help and exits 0', async () => {
    const help = await bellhop(['--help'], env);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/Exit codes:\n {2}0 {2}success\n {2}1 .*\n {2}2 {2}usage error.*\n {2}3 {2}not logged in.*\n {2}4 {2}the API could not be reached/);
    expect((await bellhop(['--version'], env)).stdout).toBe('1.2.3\n');
  });

  it('exits 2 on usage errors', async () => {
    expect((await bellhop(['nope'], env)).code).toBe(2);
    expect((await bellhop([], env)).code).toBe(2);
    const missing = await bellhop(['webhooks', 'create', '--project', 'proj_1'], env);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("required option '--url <url>' not specified");
    expect((await bellhop(['stats', '--window', '1y', '--webhook', 'wh_1'], env)).code).toBe(2);
    expect((await bellhop(['stats'], env)).code).toBe(2);
    expect((await bellhop(['verify', '--secret', 'whsec_x', '--file', join(dir, 'missing.json'), '--signature', 'sha256=00'], env)).code).toBe(2);
    expect((await bellhop(['login', '--email', 'a@example.com'], env)).code).toBe(2);
  });

  it('exits 3 when not logged in, before calling anything', async () => {
    const result = await bellhop(['projects', 'list'], env);
    expect(result.code).toBe(3);
    expect(result.stderr).toContain('Not logged in');
  });

  it('logs out of a damaged credentials file by deleting it', async () => {
    const path = join(dir, 'config', 'bellhop', 'credentials.json');
    mkdirSync(join(dir, 'config', 'bellhop'), { recursive: true });
    writeFileSync(path, 'not json');
    expect((await bellhop(['projects', 'list'], env)).code).toBe(3);
    const result = await bellhop(['logout', '--json'], env);
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ session: 'none', credentialsDeleted: true });
    expect(existsSync(path)).toBe(false);
  });

  it('exits 4 when the API cannot be reached', async () => {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    const result = await bellhop(['projects', 'list', '--api', `http://127.0.0.1:${port}`], { ...env, BELLHOP_TOKEN: 'bht_x' });
    expect(result.code).toBe(4);
    expect(result.stderr).toContain('ECONNREFUSED');
  });

  describe('against an HTTP server that answers as told', () => {
    let server: Server;
    let answer: { status: number; body: string; type?: string };
    let api: string;
    let authorizations: Array<string | undefined> = [];
    beforeAll(async () => {
      server = createServer((req, res) => {
        authorizations.push(req.headers.authorization);
        res.writeHead(answer.status, { 'content-type': answer.type ?? 'application/json', 'x-request-id': 'req_header' });
        res.end(answer.body);
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      api = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    });
    afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

    it("prints the error shape's message, code and request id, and exits 1", async () => {
      answer = { status: 422, body: JSON.stringify({ statusCode: 422, error: 'Validation failed', code: 'validation_failed', details: [{ field: 'url', message: 'url must be https' }], requestId: 'req_1' }) };
      const result = await bellhop(['projects', 'list', '--api', api], { ...env, BELLHOP_TOKEN: 'bht_x' });
      expect(result.code).toBe(1);
      expect(result.stderr).toBe('Error: Validation failed\n  code: validation_failed  status: 422  requestId: req_1\n  - url: url must be https\n');
    });

    it('exits 3 on 401', async () => {
      answer = { status: 401, body: JSON.stringify({ statusCode: 401, error: 'Authentication required', code: 'unauthenticated', details: [], requestId: 'req_2' }) };
      expect((await bellhop(['whoami', '--api', api], { ...env, BELLHOP_TOKEN: 'bht_x' })).code).toBe(3);
    });

    it("makes up the shape for an answer that is not the API's (a proxy's 502 page)", async () => {
      answer = { status: 502, body: '<html>Bad Gateway</html>', type: 'text/html' };
      const result = await bellhop(['projects', 'list', '--api', api], { ...env, BELLHOP_TOKEN: 'bht_x' });
      expect(result.code).toBe(1);
      expect(result.stderr).toContain('code: http_502  status: 502  requestId: req_header');
    });

    it('sends the stored token only to the API it was stored for, and exits 3 before calling any other', async () => {
      const path = join(dir, 'config', 'bellhop', 'credentials.json');
      mkdirSync(join(dir, 'config', 'bellhop'), { recursive: true });
      answer = { status: 200, body: JSON.stringify({ projects: [] }) };
      authorizations = [];
      try {
        writeFileSync(path, JSON.stringify({ api: 'https://bellhop.example.com', token: 'stored-session' }));
        for (const result of [await bellhop(['projects', 'list', '--api', api], env), await bellhop(['whoami'], { ...env, BELLHOP_API: api })]) {
          expect(result.code).toBe(3);
          expect(result.stderr).toContain(`The stored login is for https://bellhop.example.com, not ${api}: set BELLHOP_TOKEN, or run \`bellhop login --api ${api}\``);
        }
        expect(authorizations).toEqual([]);
        // Logout pointed at another API keeps the stored login (its session is still to revoke).
        const logout = await bellhop(['logout', '--api', api], env);
        expect(logout.code).toBe(3);
        expect(logout.stderr).toContain('The stored login is for https://bellhop.example.com');
        expect(existsSync(path)).toBe(true);
        expect(authorizations).toEqual([]);
        writeFileSync(path, JSON.stringify({ api: `${api}/`, token: 'stored-session' }));
        expect((await bellhop(['projects', 'list', '--api', api], env)).code).toBe(0);
        expect(authorizations).toEqual(['Bearer stored-session']);
      } finally {
        rmSync(path, { force: true });
      }
    });

    it('prints the JSON it got with --json, a table without', async () => {
      const projects = { projects: [{ id: 'proj_1', name: 'my-mcp-server', organizationId: 'org_1', retentionDays: 30, createdAt: '2026-01-15T10:30:00.000Z' }] };
      answer = { status: 200, body: JSON.stringify(projects) };
      const asJson = await bellhop(['projects', 'list', '--json', '--api', api], { ...env, BELLHOP_TOKEN: 'bht_x' });
      expect(JSON.parse(asJson.stdout)).toEqual(projects);
      const asTable = await bellhop(['projects', 'list', '--api', api], { ...env, BELLHOP_TOKEN: 'bht_x' });
      expect(asTable.stdout).toBe('ID      NAME           ORGANIZATION  RETENTION  CREATED\nproj_1  my-mcp-server  org_1         30d        2026-01-15T10:30:00.000Z\n');
    });
  });

  it('verifies a body offline: exit 0 when the signature holds, 1 when it does not', async () => {
    const secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
    const body = join(dir, 'body.json');
    writeFileSync(body, '{"event":"baseline.uploaded"}');
    const signature = 'sha256=' + createHmac('sha256', secret).update('{"event":"baseline.uploaded"}').digest('hex');
    const valid = await bellhop(['verify', '--secret', secret, '--file', body, '--signature', signature], env);
    expect(valid).toMatchObject({ code: 0, stdout: 'valid: X-Bellwether-Signature matches (entry 1 of 1)\n' });
    writeFileSync(body, '{"event":"baseline.uploaded" }');
    const invalid = await bellhop(['verify', '--json', '--secret', secret, '--file', body, '--signature', signature], env);
    expect(invalid.code).toBe(1);
    expect(JSON.parse(invalid.stdout)).toMatchObject({ valid: false, results: [{ scheme: 'bellwether', valid: false }] });
    // Half of the Standard Webhooks headers is a usage error, not an invalid signature.
    expect((await bellhop(['verify', '--secret', secret, '--file', body, '--webhook-id', 'evt_1'], env)).code).toBe(2);
  });
});
