import { createSecretKey, KeyObject } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import { PassportStrategy } from '@nestjs/passport';
import { ExtractJwt, Strategy } from 'passport-jwt';
import { BELLHOP_CONFIG, BellhopConfig } from '@bellhop/config';
import { Batcher, PrismaService } from '@bellhop/database';
import type { Role } from '@bellhop/database';
import { AppError } from '@bellhop/domain';
import { Principal } from './principal';

export const JWT_ISSUER = 'bellhop';
export const JWT_AUDIENCE = 'bellhop-api';
export const JWT_ALGORITHM = 'HS256';

const keys = new WeakMap<BellhopConfig, KeyObject>();

/** The session signing key as a KeyObject, made once per configuration. */
export function jwtKey(config: BellhopConfig): KeyObject {
  let key = keys.get(config);
  if (!key) {
    key = createSecretKey(Buffer.from(config.jwtSecret, 'utf8'));
    keys.set(config, key);
  }
  return key;
}

interface SessionClaims {
  sub: string;
  sid: string;
}

interface SessionRow {
  id: string;
  user_id: string;
  memberships: Array<{ o: string; r: Role }>;
}

/** Session tokens: one pinned algorithm, issuer, audience, expiry and not-before; revocable through the session row. */
@Injectable()
export class JwtStrategy extends PassportStrategy(Strategy, 'jwt') {
  private readonly sessions = new Batcher<SessionClaims, SessionRow | null>((claims) => this.lookup(claims), { maxBatch: 500 });

  constructor(
    @Inject(BELLHOP_CONFIG) config: BellhopConfig,
    private readonly prisma: PrismaService,
  ) {
    super({
      jwtFromRequest: ExtractJwt.fromAuthHeaderAsBearerToken(),
      // A KeyObject: given a string, jsonwebtoken first tries (and fails) to parse it as a PEM
      // public key on every request, which costs more than the whole rest of the check.
      secretOrKey: jwtKey(config) as unknown as string, // passport-jwt types predate KeyObject; jsonwebtoken takes it
      algorithms: [JWT_ALGORITHM],
      issuer: JWT_ISSUER,
      audience: JWT_AUDIENCE,
      ignoreExpiration: false,
      jsonWebTokenOptions: { clockTolerance: 5 },
    });
  }

  async validate(claims: SessionClaims): Promise<Principal> {
    if (typeof claims.sub !== 'string' || typeof claims.sid !== 'string') throw new AppError('unauthenticated', 'Authentication required');
    const session = await this.sessions.run(claims);
    if (!session) throw new AppError('unauthenticated', 'Authentication required');
    return {
      type: 'user',
      id: claims.sub,
      userId: claims.sub,
      sessionId: session.id,
      tokenOrganizationId: null,
      tokenRole: null,
      memberships: new Map(session.memberships.map((m) => [m.o, m.r])),
    };
  }

  /**
   * The sessions (revocable at once: every request reads its row) and their users' memberships,
   * for all requests that arrive together, in one query.
   */
  private async lookup(claims: SessionClaims[]): Promise<Array<SessionRow | null>> {
    const ids = [...new Set(claims.map((c) => c.sid))];
    const rows = await this.prisma.$queryRaw<SessionRow[]>`
      SELECT s.id, s.user_id, COALESCE(json_agg(json_build_object('o', m.organization_id, 'r', m.role)) FILTER (WHERE m.organization_id IS NOT NULL), '[]') AS memberships
        FROM sessions s LEFT JOIN memberships m ON m.user_id = s.user_id
       WHERE s.id = ANY (${ids}::text[]) AND s.revoked_at IS NULL AND s.expires_at > now()
       GROUP BY s.id, s.user_id`;
    const byId = new Map(rows.map((row) => [row.id, row]));
    return claims.map((c) => {
      const row = byId.get(c.sid);
      return row && row.user_id === c.sub ? row : null;
    });
  }
}
