import type { Role } from '@bellhop/database';

/** Who is calling: a signed-in user (session) or an API token acting inside one organization. */
export interface Principal {
  type: 'user' | 'api_token';
  /** usr_ for a user, tok_ for an API token: the audit log's actor id. */
  id: string;
  userId: string | null;
  sessionId: string | null;
  /** For an API token, the only organization it can act in. */
  tokenOrganizationId: string | null;
  tokenRole: Role | null;
  /** Organizations and roles, when loaded together with the credential (saves a query per request). */
  memberships?: Map<string, Role>;
}

/** The organization a request acts in, resolved by TenantGuard from the route. */
export interface TenantScope {
  organizationId: string;
  role: Role;
  principal: Principal;
}

export const ROLE_RANK: Record<Role, number> = { member: 1, admin: 2, owner: 3 };

export function roleAtLeast(role: Role, required: Role): boolean {
  return ROLE_RANK[role] >= ROLE_RANK[required];
}
