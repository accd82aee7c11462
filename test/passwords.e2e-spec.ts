import { randomBytes } from 'node:crypto';
import { PrismaService } from '@bellhop/database';
import { HashPool } from '../apps/api/src/auth/hash-pool';
import * as passwords from '../apps/api/src/auth/password';
import { Stack, startStack } from './support/stack';
import { eventually } from './support/tenant';

const PASSWORD = 'correct horse battery';
/** PASSWORD under the previous scheme (scrypt N=2^14, r=8, p=1), as rows written before Argon2id hold it. */
const LEGACY_HASH = 'scrypt$16384$8$1$Gr2jqSxm9vL03G+m7lTCRQ==$vvcYAJ1ISRuotZA+WmPwuxC/o6OUGZ31x59nYtPV8T4=';
const CURRENT = /^\$argon2id\$v=19\$m=19456,t=2,p=1\$/;

describe('passwords', () => {
  let stack: Stack;
  let prisma: PrismaService;
  let pool: HashPool;

  beforeAll(async () => {
    // Five failed logins per account a minute. `trust proxy` is loopback and supertest connects
    // from 127.0.0.1: X-Forwarded-For names the client, and every request below comes from an
    // address of its own, so that the per-address limit (same setting) never gets in the way.
    stack = await startStack({ worker: false, env: { AUTH_RATE_LIMIT: '5/1m', TRUST_PROXY: 'loopback' } });
    prisma = stack.api.get(PrismaService);
    pool = stack.api.get(HashPool);
  });
  afterAll(() => stack?.stop());

  let addresses = 0;
  const address = () => {
    addresses++;
    return `198.18.${addresses >> 8}.${addresses & 255}`;
  };
  const newEmail = () => `pw-${randomBytes(6).toString('hex')}@example.com`;
  const login = (email: string, password: string) => stack.http().post('/auth/login').set('X-Forwarded-For', address()).send({ email, password });
  async function signup(): Promise<string> {
    const email = newEmail();
    await stack.http().post('/auth/signup').set('X-Forwarded-For', address()).send({ email, password: PASSWORD, name: 'Pat' }).expect(201);
    return email;
  }
  const storedHash = async (email: string) => (await prisma.user.findUniqueOrThrow({ where: { email } })).passwordHash;

  function expectRateLimited(res: { status: number; headers: Record<string, string>; body: unknown }, maxRetryAfter = 60) {
    expect(res.status).toBe(429);
    expect(Number(res.headers['retry-after'])).toBeGreaterThan(0);
    expect(Number(res.headers['retry-after'])).toBeLessThanOrEqual(maxRetryAfter);
    expect(res.body).toEqual({ statusCode: 429, code: 'rate_limited', error: expect.any(String), details: [], requestId: expect.stringMatching(/^req_/) });
  }

  it('makes a wrong password cost one verification of each scheme, for unknown, current and legacy accounts alike', async () => {
    // An account on the previous scheme exists before the first failed login of this process.
    const legacy = await signup();
    await prisma.user.update({ where: { email: legacy }, data: { passwordHash: LEGACY_HASH } });
    const current = await signup();
    const verify = jest.spyOn(passwords, 'verifyPassword');
    const schemes = () => verify.mock.calls.map(([, stored]) => (stored.startsWith('scrypt$') ? 'scrypt' : stored.startsWith('$argon2id$') ? 'argon2id' : stored)).sort();
    try {
      for (const email of [newEmail(), current, legacy]) {
        verify.mockClear();
        await login(email, 'not the password').expect(401);
        expect(schemes()).toEqual(['argon2id', 'scrypt']);
      }
      // A right password costs its own scheme's verification only.
      verify.mockClear();
      await login(current, PASSWORD).expect(200);
      expect(schemes()).toEqual(['argon2id']);
    } finally {
      verify.mockRestore();
    }
    expect(await storedHash(legacy)).toBe(LEGACY_HASH);
  });

  it('lets a right password in when its upgraded hash cannot be stored', async () => {
    const email = await signup();
    await prisma.user.update({ where: { email }, data: { passwordHash: LEGACY_HASH } });
    // The database refuses to change this account's hash.
    const refuse = `refuse_${randomBytes(4).toString('hex')}`;
    await prisma.$executeRawUnsafe(`CREATE FUNCTION ${refuse}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'hash change refused'; END $$`);
    await prisma.$executeRawUnsafe(
      `CREATE TRIGGER ${refuse} BEFORE UPDATE OF password_hash ON users FOR EACH ROW WHEN (OLD.email = '${email}') EXECUTE FUNCTION ${refuse}()`,
    );
    try {
      await login(email, PASSWORD).expect(200);
      expect(await storedHash(email)).toBe(LEGACY_HASH);
    } finally {
      await prisma.$executeRawUnsafe(`DROP TRIGGER ${refuse} ON users`);
      await prisma.$executeRawUnsafe(`DROP FUNCTION ${refuse}()`);
    }
    // The next login upgrades it.
    await login(email, PASSWORD).expect(200);
    expect(await storedHash(email)).toMatch(CURRENT);
  });

  it('stores new passwords with Argon2id and replaces an older hash at the next successful login', async () => {
    const email = await signup();
    expect(await storedHash(email)).toMatch(CURRENT);

    await prisma.user.update({ where: { email }, data: { passwordHash: LEGACY_HASH } });
    await login(email, 'not the password').expect(401);
    expect(await storedHash(email)).toBe(LEGACY_HASH);
    // Two logins at once on the old hash: both get in, one of them writes the new hash.
    const both = await Promise.all([login(email, PASSWORD), login(email, PASSWORD)]);
    expect(both.map((res) => res.status)).toEqual([200, 200]);
    const upgraded = await storedHash(email);
    expect(upgraded).toMatch(CURRENT);
    await login(email, PASSWORD).expect(200);
    expect(await storedHash(email)).toBe(upgraded);
    await login(email, 'not the password').expect(401);
  });

  it('refuses logins beyond the hashing line at once with 429, and answers the waiting ones', async () => {
    // Both hashing slots held, as by two slow hashes: 32 logins wait in line, the rest are refused.
    let release!: () => void;
    const busy = new Promise<void>((resolve) => (release = resolve));
    const holders = [pool.run(() => busy), pool.run(() => busy)];
    const answered: number[] = [];
    const burst = Array.from({ length: 40 }, () =>
      login(newEmail(), PASSWORD).then((res) => {
        answered.push(res.status);
        return res;
      }),
    );
    try {
      await eventually(async () => (pool.waiting === 32 && answered.length === 8 ? true : undefined));
    } finally {
      release();
    }
    await Promise.all(holders);
    const responses = await Promise.all(burst);
    const refused = responses.filter((res) => res.status === 429);
    expect(refused).toHaveLength(8);
    for (const res of refused) {
      expectRateLimited(res, 1);
      expect(res.headers['retry-after']).toBe('1');
    }
    // The ones that waited were checked (unknown emails: 401); nothing failed.
    expect(responses.filter((res) => res.status === 401)).toHaveLength(32);
    expect(pool.waiting).toBe(0);
    await login(await signup(), PASSWORD).expect(200);
  });

  it('refuses an account’s logins from any address once it has had AUTH_RATE_LIMIT failures, even with the right password', async () => {
    const email = await signup();
    const other = await signup();
    for (let i = 0; i < 5; i++) await login(email, `wrong password ${i}`).expect(401);

    const run = jest.spyOn(pool, 'run');
    try {
      const refused = await login(email, PASSWORD);
      expectRateLimited(refused);
      // Refused before the password was looked at.
      expect(run).not.toHaveBeenCalled();
    } finally {
      run.mockRestore();
    }
    // Another account is not affected.
    await login(other, PASSWORD).expect(200);
  });

  it('counts unknown emails the same way', async () => {
    const unknown = newEmail();
    for (let i = 0; i < 5; i++) await login(unknown, `wrong password ${i}`).expect(401);
    expectRateLimited(await login(unknown, PASSWORD));
  });

  it('does not clear an account’s failures on a successful login', async () => {
    const email = await signup();
    for (let i = 0; i < 4; i++) await login(email, `wrong password ${i}`).expect(401);
    await login(email, PASSWORD).expect(200);
    await login(email, 'wrong password 4').expect(401);
    expectRateLimited(await login(email, PASSWORD));
  });

  it('lets no more than AUTH_RATE_LIMIT concurrent guesses at one account be checked', async () => {
    const email = await signup();
    const responses = await Promise.all(Array.from({ length: 12 }, (_, i) => login(email, `wrong password ${i}`)));
    expect(responses.filter((res) => res.status === 401)).toHaveLength(5);
    const refused = responses.filter((res) => res.status === 429);
    expect(refused).toHaveLength(7);
    for (const res of refused) expectRateLimited(res);
  });
});
