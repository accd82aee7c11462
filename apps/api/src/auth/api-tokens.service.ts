import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { Injectable } from '@nestjs/common';
import { Batcher, PrismaService } from '@bellhop/database';
import type { Role } from '@bellhop/database';
import { Principal, ROLE_RANK } from './principal';

export const API_TOKEN_PREFIX = 'bht_';
const LOOKUP_LENGTH = 16;
const LAST_USED_RESOLUTION_MS = 60_000;

interface TokenRow {
  id: string;
  organization_id: string;
  role: Role;
  token_hash: string;
  last_used_at: Date | null;
  lookup_prefix: string;
  expired: boolean;
  /** The user who created the token (usr_...), or null for tokens older than that record. */
  created_by_id: string | null;
  /** That user's role in the token's organization now; null when they are no longer a member. */
  creator_role: Role | null;
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
    // With the creator's role now: a token never has more rights than its creator has today.
    const rows = await this.prisma.$queryRaw<TokenRow[]>`
      SELECT t.id, t.organization_id, t.role::text AS role, t.token_hash, t.last_used_at, t.lookup_prefix,
             (t.expires_at IS NOT NULL AND t.expires_at <= now()) AS expired, t.created_by_id, m.role::text AS creator_role
        FROM api_tokens t
        LEFT JOIN memberships m ON m.organization_id = t.organization_id AND m.user_id = t.created_by_id
       WHERE t.lookup_prefix = ANY (${[...new Set(prefixes)]}::text[]) AND t.revoked_at IS NULL`;
    const byPrefix = new Map(rows.map((row) => [row.lookup_prefix, row]));
    return prefixes.map((prefix) => byPrefix.get(prefix) ?? null);
  }

  /**
   * The role a token acts with: its own, capped at its creator's current role. A token whose
   * creator has left the organization, or that has expired, acts with none (401). Tokens older
   * than the creator's record keep their own role.
   */
  static effectiveRole(row: Pick<TokenRow, 'role' | 'expired' | 'created_by_id' | 'creator_role'>): Role | null {
    if (row.expired) return null;
    if (!row.created_by_id?.startsWith('usr_')) return row.role;
    if (!row.creator_role) return null;
    return ROLE_RANK[row.creator_role] < ROLE_RANK[row.role] ? row.creator_role : row.role;
  }

  static generate(): { token: string; lookupPrefix: string; tokenHash: string } {
    const token = API_TOKEN_PREFIX + randomBytes(32).toString('base64url');
    return { token, lookupPrefix: token.slice(0, LOOKUP_LENGTH), tokenHash: sha256(token) };
  }

  async verify(token: string): Promise<Principal | null> {
    if (!token.startsWith(API_TOKEN_PREFIX) || token.length < LOOKUP_LENGTH + 8 || token.length > 200) return null;
    const row = await this.rows.run(token.slice(0, LOOKUP_LENGTH));
    if (!row) return null;
    const expected = Buffer.from(row.token_hash, 'hex');
    const actual = Buffer.from(sha256(token), 'hex');
    if (expected.length !== actual.length || !timingSafeEqual(expected, actual)) return null;
    const role = ApiTokenVerifier.effectiveRole(row);
    if (!role) return null;
    const now = Date.now();
    if (!row.last_used_at || now - row.last_used_at.getTime() > LAST_USED_RESOLUTION_MS) {
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
      tokenOrganizationId: row.organization_id,
      tokenRole: role,
    };
  }
}
