import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { Injectable } from '@nestjs/common';
import { Batcher, PrismaService } from '@bellhop/database';
import type { Role } from '@bellhop/database';
import { Principal } from './principal';

export const API_TOKEN_PREFIX = 'bht_';
const LOOKUP_LENGTH = 16;
const LAST_USED_RESOLUTION_MS = 60_000;

interface TokenRow {
  id: string;
  organizationId: string;
  role: string;
  tokenHash: string;
  lastUsedAt: Date | null;
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** API tokens: shown once, stored as a SHA-256 hash (they are 256-bit random) with an indexed lookup prefix. */
@Injectable()
export class ApiTokenVerifier {
  /** Tokens of requests that arrive together are looked up in one query. */
  private readonly rows = new Batcher<string, TokenRow | null>((prefixes) => this.lookup(prefixes), { maxBatch: 500 });

  constructor(private readonly prisma: PrismaService) {}

  private async lookup(prefixes: string[]): Promise<Array<TokenRow | null>> {
    const rows = await this.prisma.apiToken.findMany({
      where: { lookupPrefix: { in: [...new Set(prefixes)] }, revokedAt: null },
      select: { id: true, organizationId: true, role: true, tokenHash: true, lastUsedAt: true, lookupPrefix: true },
    });
    const byPrefix = new Map(rows.map((row) => [row.lookupPrefix, row]));
    return prefixes.map((prefix) => byPrefix.get(prefix) ?? null);
  }

  static generate(): { token: string; lookupPrefix: string; tokenHash: string } {
    const token = API_TOKEN_PREFIX + randomBytes(32).toString('base64url');
    return { token, lookupPrefix: token.slice(0, LOOKUP_LENGTH), tokenHash: sha256(token) };
  }

  async verify(token: string): Promise<Principal | null> {
    if (!token.startsWith(API_TOKEN_PREFIX) || token.length < LOOKUP_LENGTH + 8 || token.length > 200) return null;
    const row = await this.rows.run(token.slice(0, LOOKUP_LENGTH));
    if (!row) return null;
    const expected = Buffer.from(row.tokenHash, 'hex');
    const actual = Buffer.from(sha256(token), 'hex');
    if (expected.length !== actual.length || !timingSafeEqual(expected, actual)) return null;
    const now = Date.now();
    if (!row.lastUsedAt || now - row.lastUsedAt.getTime() > LAST_USED_RESOLUTION_MS) {
      // Written at most once a minute, and only if nobody else wrote it meanwhile.
      await this.prisma.apiToken.updateMany({
        where: { id: row.id, OR: [{ lastUsedAt: null }, { lastUsedAt: { lt: new Date(now - LAST_USED_RESOLUTION_MS) } }] },
        data: { lastUsedAt: new Date(now) },
      });
    }
    return {
      type: 'api_token',
      id: row.id,
      userId: null,
      sessionId: null,
      tokenOrganizationId: row.organizationId,
      tokenRole: row.role as Role,
    };
  }
}
