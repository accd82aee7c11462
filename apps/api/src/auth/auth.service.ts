import { Inject, Injectable, Logger } from '@nestjs/common';
import { JwtService } from '@nestjs/jwt';
import { BELLHOP_CONFIG, BellhopConfig } from '@bellhop/config';
import { PrismaService, isUniqueViolation } from '@bellhop/database';
import { AppError, newId } from '@bellhop/domain';
import { SignupDto } from './dto/signup.dto';
import { LoginDto } from './dto/login.dto';
import { JWT_ALGORITHM, JWT_AUDIENCE, JWT_ISSUER, jwtKey } from './jwt.strategy';
import { HashPool, HashPoolFull } from './hash-pool';
import { LoginLimiter } from './login-limiter';
import { DUMMY_HASH, DUMMY_LEGACY_HASH, hashPassword, isLegacyHash, needsRehash, verifyPassword } from './password';
import { Principal } from './principal';
import { present } from '../common/present';

const INVALID_LOGIN = 'Invalid email or password';

/** How long the answer to "do hashes of the previous scheme remain?" is trusted while it is yes. */
const LEGACY_CHECK_INTERVAL_MS = 10 * 60_000;

@Injectable()
export class AuthService {
  private readonly logger = new Logger(AuthService.name);
  /** Whether users still hold hashes of the previous scheme, and when that was last asked (see legacyHashesRemain). */
  private legacy: { remain: Promise<boolean>; askedAt: number } | undefined;

  constructor(
    private readonly prisma: PrismaService,
    private readonly jwt: JwtService,
    @Inject(BELLHOP_CONFIG) private readonly config: BellhopConfig,
    private readonly hashes: HashPool,
    private readonly logins: LoginLimiter,
  ) {}

  async signup(dto: SignupDto) {
    const passwordHash = await this.hashes.run(() => hashPassword(dto.password));
    const userId = newId('user');
    const orgId = newId('organization');
    try {
      const [user, organization] = await this.prisma.$transaction([
        this.prisma.user.create({ data: { id: userId, email: dto.email, name: dto.name, passwordHash } }),
        this.prisma.organization.create({ data: { id: orgId, name: `${dto.name}'s organization`, plan: this.config.defaultPlan } }),
        this.prisma.membership.create({ data: { organizationId: orgId, userId, role: 'owner' } }),
      ]);
      const session = await this.startSession(user.id);
      return { user: present.user(user), organization: present.organization(organization), session };
    } catch (err) {
      if (isUniqueViolation(err)) throw new AppError('conflict', 'An account with this email already exists');
      throw err;
    }
  }

  async login(dto: LoginDto) {
    // The account's budget of failures is checked before the password: once it is spent, guessing
    // from any number of addresses gets 429 and costs no hash.
    const user = await this.logins.attempt(dto.email, async () => {
      const found = await this.prisma.user.findUnique({ where: { email: dto.email } });
      // Verify against a dummy hash for unknown emails, so both failures cost the same time.
      const stored = found?.passwordHash ?? DUMMY_HASH;
      const ok = await this.hashes.run(() => verifyPassword(dto.password, stored));
      if (ok && found) return found;
      // A failure costs one verification of each scheme while accounts of both may exist: a
      // scrypt hash takes longer to check than an Argon2id one, and would tell that its account exists.
      if (await this.legacyHashesRemain()) {
        const other = isLegacyHash(stored) ? DUMMY_HASH : DUMMY_LEGACY_HASH;
        await this.hashes.run(() => verifyPassword(dto.password, other));
      }
      return null;
    });
    if (!user) throw new AppError('unauthenticated', INVALID_LOGIN);
    await this.upgradeHash(user, dto.password);
    return { user: present.user(user), session: await this.startSession(user.id) };
  }

  /**
   * Replaces a matched hash of older parameters (or the previous scheme) with one at the current
   * parameters. Guarded by the old value, so that of two concurrent logins one writes and the
   * other changes nothing. When the hashers are busy the login goes ahead and a later one upgrades.
   */
  private async upgradeHash(user: { id: string; passwordHash: string }, password: string): Promise<void> {
    if (!needsRehash(user.passwordHash)) return;
    let passwordHash: string;
    try {
      passwordHash = await this.hashes.run(() => hashPassword(password));
    } catch (err) {
      if (err instanceof HashPoolFull) return;
      throw err;
    }
    try {
      await this.prisma.user.updateMany({ where: { id: user.id, passwordHash: user.passwordHash }, data: { passwordHash } });
    } catch (err) {
      // The password was right: the login goes ahead on the old hash, and a later one upgrades it.
      this.logger.warn({ userId: user.id, err: (err as Error).message }, 'could not store the upgraded password hash');
    }
  }

  /**
   * Whether any user still holds a hash of the previous scheme (new hashes never are): asked at
   * most every 10 minutes while the answer is yes, never again once it is no. A failed question
   * counts as yes, and is asked again at the next failed login.
   */
  private legacyHashesRemain(): Promise<boolean> {
    const now = Date.now();
    if (!this.legacy || now - this.legacy.askedAt >= LEGACY_CHECK_INTERVAL_MS) {
      const legacy = {
        askedAt: now,
        remain: this.prisma
          .$queryRaw<Array<{ remain: boolean }>>`SELECT EXISTS (SELECT 1 FROM users WHERE password_hash LIKE 'scrypt$%') AS remain`
          .then(([row]) => {
            // No: for good, so the timestamp no longer matters.
            if (!row.remain) legacy.askedAt = Infinity;
            return row.remain;
          })
          .catch((err: Error) => {
            this.logger.warn({ err: err.message }, 'could not tell whether hashes of the previous scheme remain');
            if (this.legacy === legacy) this.legacy = undefined;
            return true;
          }),
      };
      this.legacy = legacy;
    }
    return this.legacy.remain;
  }

  async logout(principal: Principal): Promise<void> {
    if (principal.sessionId) {
      await this.prisma.session.updateMany({ where: { id: principal.sessionId, revokedAt: null }, data: { revokedAt: new Date() } });
    }
  }

  async me(principal: Principal) {
    if (principal.type !== 'user') {
      const org = await this.prisma.organization.findFirst({ where: { id: principal.tokenOrganizationId! } });
      return { user: null, apiToken: { id: principal.id }, memberships: org ? [{ organization: present.organization(org), role: principal.tokenRole }] : [] };
    }
    const user = await this.prisma.user.findUniqueOrThrow({
      where: { id: principal.userId! },
      include: { memberships: { include: { organization: true }, orderBy: { createdAt: 'asc' } } },
    });
    return {
      user: present.user(user),
      memberships: user.memberships.map((m) => ({ organization: present.organization(m.organization), role: m.role })),
    };
  }

  private async startSession(userId: string) {
    const id = newId('session');
    const expiresAt = new Date(Date.now() + this.config.sessionTtlMs);
    await this.prisma.session.create({ data: { id, userId, expiresAt } });
    const token = await this.jwt.signAsync(
      { sub: userId, sid: id },
      {
        algorithm: JWT_ALGORITHM,
        issuer: JWT_ISSUER,
        audience: JWT_AUDIENCE,
        expiresIn: Math.floor(this.config.sessionTtlMs / 1000),
        notBefore: 0,
        privateKey: jwtKey(this.config),
      },
    );
    return { token, expiresAt: expiresAt.toISOString() };
  }
}
