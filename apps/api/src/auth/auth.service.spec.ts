import type { JwtService } from '@nestjs/jwt';
import type { BellhopConfig } from '@bellhop/config';
import type { PrismaService } from '@bellhop/database';
import { AppError } from '@bellhop/domain';
import { AuthService } from './auth.service';
import { HashPool } from './hash-pool';
import type { LoginLimiter } from './login-limiter';
import * as passwords from './password';

/** AuthService's failed logins over a stand-in database holding no users, and no limiter. */
describe('AuthService: the padding of failed logins', () => {
  const MINUTE = 60_000;
  let now: number;
  let verify: jest.SpyInstance;

  beforeEach(() => {
    now = Date.now();
    jest.spyOn(Date, 'now').mockImplementation(() => now);
    verify = jest.spyOn(passwords, 'verifyPassword');
  });
  afterEach(() => jest.restoreAllMocks());

  function service(legacyRemain: boolean) {
    const asked = jest.fn(async () => [{ remain: legacyRemain }]);
    const prisma = { user: { findUnique: async () => null }, $queryRaw: asked } as unknown as PrismaService;
    const logins = { attempt: (_email: string, check: () => Promise<unknown>) => check() } as unknown as LoginLimiter;
    const auth = new AuthService(prisma, {} as JwtService, {} as BellhopConfig, new HashPool(), logins);
    const fail = async () => {
      verify.mockClear();
      await expect(auth.login({ email: 'nobody@example.com', password: 'wrong' })).rejects.toBeInstanceOf(AppError);
      return verify.mock.calls.length;
    };
    return { asked, fail };
  }

  it('verifies the other scheme too while legacy hashes remain, asking again every 10 minutes', async () => {
    const { asked, fail } = service(true);
    expect(await fail()).toBe(2);
    now += 9 * MINUTE;
    expect(await fail()).toBe(2);
    expect(asked).toHaveBeenCalledTimes(1);
    now += 2 * MINUTE;
    expect(await fail()).toBe(2);
    expect(asked).toHaveBeenCalledTimes(2);
  });

  it('stops padding once none remain, and never asks again', async () => {
    const { asked, fail } = service(false);
    expect(await fail()).toBe(1);
    now += 60 * MINUTE;
    expect(await fail()).toBe(1);
    expect(asked).toHaveBeenCalledTimes(1);
  });
});
