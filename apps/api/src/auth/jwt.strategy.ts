import { Inject, Injectable } from '@nestjs/common';
import { PassportStrategy } from '@nestjs/passport';
import { ExtractJwt, Strategy } from 'passport-jwt';
import { BELLHOP_CONFIG, BellhopConfig } from '@bellhop/config';
import { PrismaService } from '@bellhop/database';
import { AppError } from '@bellhop/domain';
import { Principal } from './principal';

export const JWT_ISSUER = 'bellhop';
export const JWT_AUDIENCE = 'bellhop-api';
export const JWT_ALGORITHM = 'HS256';

interface SessionClaims {
  sub: string;
  sid: string;
}

/** Session tokens: one pinned algorithm, issuer, audience, expiry and not-before; revocable through the session row. */
@Injectable()
export class JwtStrategy extends PassportStrategy(Strategy, 'jwt') {
  constructor(
    @Inject(BELLHOP_CONFIG) config: BellhopConfig,
    private readonly prisma: PrismaService,
  ) {
    super({
      jwtFromRequest: ExtractJwt.fromAuthHeaderAsBearerToken(),
      secretOrKey: config.jwtSecret,
      algorithms: [JWT_ALGORITHM],
      issuer: JWT_ISSUER,
      audience: JWT_AUDIENCE,
      ignoreExpiration: false,
      jsonWebTokenOptions: { clockTolerance: 5 },
    });
  }

  async validate(claims: SessionClaims): Promise<Principal> {
    if (typeof claims.sub !== 'string' || typeof claims.sid !== 'string') throw new AppError('unauthenticated', 'Authentication required');
    const session = await this.prisma.session.findFirst({
      where: { id: claims.sid, userId: claims.sub, revokedAt: null, expiresAt: { gt: new Date() } },
      select: { id: true },
    });
    if (!session) throw new AppError('unauthenticated', 'Authentication required');
    return { type: 'user', id: claims.sub, userId: claims.sub, sessionId: session.id, tokenOrganizationId: null, tokenRole: null };
  }
}
