import { CanActivate, ExecutionContext, Injectable, SetMetadata, applyDecorators, createParamDecorator, UseGuards } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { AuthGuard } from '@nestjs/passport';
import { ApiBearerAuth } from '@nestjs/swagger';
import type { Request, Response } from 'express';
import { PrismaService } from '@bellhop/database';
import type { Role } from '@bellhop/database';
import { AppError, isId } from '@bellhop/domain';
import { PUBLIC_ROUTE, Public, clientRequestIdOf } from '@bellhop/observability';
import type { AuditContext } from '../common/audit.service';
import { AuthFailureLimiter } from '../common/rate-limit';
import { ApiTokenVerifier, API_TOKEN_PREFIX } from './api-tokens.service';
import { MembershipService } from './membership.service';
import { Principal, TenantScope, roleAtLeast } from './principal';

export { MembershipService };

type AuthedRequest = Request & { user?: Principal; tenant?: TenantScope };

const ACCESS = 'bellhop:access';

export { Public };

export interface AccessOptions {
  /** The least role the caller needs in the organization the route acts in. */
  role?: Role;
  /** Resolve a deleted webhook too: the route answers for it itself (a replay's 409 webhook_disabled). */
  deletedWebhook?: boolean;
}

/**
 * The one decorator for access: a bearer token, then the organization resolved from the route's
 * ids (another tenant's id is a 404, never a 403), then the role. Guards run in that fixed order.
 */
export function Authenticated(options: AccessOptions = {}) {
  return applyDecorators(SetMetadata(ACCESS, options), UseGuards(TenantGuard), ApiBearerAuth());
}

@Injectable()
class JwtGuard extends AuthGuard('jwt') {
  override handleRequest<T>(err: unknown, user: T): T {
    // A failure to check (the database down) is not a failed authentication: it is not counted as one.
    if (err && !(err instanceof AppError)) throw err;
    if (err || !user) throw new AppError('unauthenticated', 'Authentication required');
    return user;
  }
}

/** Global: every route needs a valid session or API token unless marked @Public(). */
@Injectable()
export class BearerGuard implements CanActivate {
  private readonly jwt = new JwtGuard();

  constructor(
    private readonly reflector: Reflector,
    private readonly tokens: ApiTokenVerifier,
    private readonly failures: AuthFailureLimiter,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    if (this.reflector.getAllAndOverride<boolean>(PUBLIC_ROUTE, [context.getHandler(), context.getClass()])) return true;
    const req = context.switchToHttp().getRequest<AuthedRequest>();
    const res = context.switchToHttp().getResponse<Response>();
    // A credential that proves valid is never refused for its address's failures (clients behind
    // one NAT or proxy share an address); a failed one counts, and past the budget gets 429.
    try {
      return await this.authenticate(context, req);
    } catch (err) {
      if (err instanceof AppError && err.code === 'unauthenticated') throw await this.failures.failed(req, res, err);
      throw err;
    }
  }

  private async authenticate(context: ExecutionContext, req: AuthedRequest): Promise<boolean> {
    const header = req.headers.authorization ?? '';
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!match) throw new AppError('unauthenticated', 'Authentication required');
    if (match[1].startsWith(API_TOKEN_PREFIX)) {
      const principal = await this.tokens.verify(match[1]);
      if (!principal) throw new AppError('unauthenticated', 'Authentication required');
      req.user = principal;
      return true;
    }
    return (await this.jwt.canActivate(context)) as boolean;
  }
}

/**
 * Resolves the organization a route acts in from its path ids, scoped to the caller's memberships
 * in the query itself, and checks the role. Routes with no id of a tenant resource pass through
 * (they scope their queries by the caller's memberships).
 */
@Injectable()
export class TenantGuard implements CanActivate {
  constructor(
    private readonly reflector: Reflector,
    private readonly prisma: PrismaService,
    private readonly memberships: MembershipService,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const options = this.reflector.getAllAndOverride<AccessOptions>(ACCESS, [context.getHandler(), context.getClass()]) ?? {};
    const req = context.switchToHttp().getRequest<AuthedRequest>();
    const principal = req.user;
    if (!principal) throw new AppError('unauthenticated', 'Authentication required');
    const params = req.params as Record<string, string>;
    const memberships = await this.memberships.of(principal);
    const organizationId = await this.resolveOrganization(params, [...memberships.keys()], options);
    if (organizationId === undefined) return true;
    // Same queries and the same answer for a missing id and for another tenant's id.
    const role = organizationId === null ? undefined : memberships.get(organizationId);
    if (organizationId === null || !role) throw AppError.notFound(resourceName(params));
    if (options.role && !roleAtLeast(role, options.role)) throw AppError.forbidden();
    req.tenant = { organizationId, role, principal };
    return true;
  }

  /**
   * The organization owning the route's resource, looked up only among the caller's organizations;
   * null when there is none such; undefined when the route names no tenant resource.
   */
  private async resolveOrganization(params: Record<string, string>, orgIds: string[], options: AccessOptions = {}): Promise<string | null | undefined> {
    const inScope = { in: orgIds };
    const found = (row: { organizationId: string } | null) => row?.organizationId ?? null;
    const select = { organizationId: true } as const;
    if (params.orgId !== undefined) return isId('organization', params.orgId) && orgIds.includes(params.orgId) ? params.orgId : null;
    if (params.projectId !== undefined) {
      if (!isId('project', params.projectId)) return null;
      // A project never changes organization, so its owner can be remembered: publishing (the
      // hottest route) then skips this query. Handlers still query the project itself, scoped.
      const cached = projectOwners.get(params.projectId);
      if (cached !== undefined) return orgIds.includes(cached) ? cached : null;
      const owner = found(await this.prisma.project.findFirst({ where: { id: params.projectId, organizationId: inScope }, select }));
      if (owner) projectOwners.set(params.projectId, owner);
      return owner;
    }
    if (params.webhookId !== undefined) {
      if (!isId('webhook', params.webhookId)) return null;
      const live = options.deletedWebhook ? {} : { deletedAt: null };
      return found(await this.prisma.webhook.findFirst({ where: { id: params.webhookId, organizationId: inScope, ...live }, select }));
    }
    if (params.replayId !== undefined) {
      if (!isId('replay', params.replayId)) return null;
      return found(await this.prisma.replay.findFirst({ where: { id: params.replayId, organizationId: inScope }, select }));
    }
    if (params.deliveryId !== undefined) {
      if (!isId('delivery', params.deliveryId)) return null;
      return found(await this.prisma.delivery.findFirst({ where: { id: params.deliveryId, organizationId: inScope }, select }));
    }
    if (params.eventId !== undefined) {
      if (!isId('event', params.eventId)) return null;
      return found(await this.prisma.event.findFirst({ where: { id: params.eventId, organizationId: inScope }, select }));
    }
    if (params.sourceId !== undefined) {
      if (!isId('source', params.sourceId)) return null;
      return found(await this.prisma.source.findFirst({ where: { id: params.sourceId, organizationId: inScope }, select }));
    }
    if (params.tokenId !== undefined) {
      if (!isId('apiToken', params.tokenId)) return null;
      return found(await this.prisma.apiToken.findFirst({ where: { id: params.tokenId, organizationId: inScope, revokedAt: null }, select }));
    }
    return undefined;
  }
}

/** A bounded map of id to owning organization, each entry kept for at most `ttlMs`. */
class OwnerCache {
  private readonly entries = new Map<string, { owner: string; until: number }>();

  constructor(
    private readonly maxEntries: number,
    private readonly ttlMs: number,
  ) {}

  get(id: string): string | undefined {
    const entry = this.entries.get(id);
    if (!entry) return undefined;
    if (entry.until < Date.now()) {
      this.entries.delete(id);
      return undefined;
    }
    return entry.owner;
  }

  delete(id: string): void {
    this.entries.delete(id);
  }

  set(id: string, owner: string): void {
    if (this.entries.size >= this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(id, { owner, until: Date.now() + this.ttlMs });
  }
}

/** Projects' owners, remembered for a minute; a deleted project is forgotten at once in this process. */
const projectOwners = new OwnerCache(50_000, 60_000);

export function forgetProject(projectId: string): void {
  projectOwners.delete(projectId);
}

function resourceName(params: Record<string, string>): string {
  if (params.webhookId) return 'Webhook';
  if (params.deliveryId) return 'Delivery';
  if (params.replayId) return 'Replay';
  if (params.eventId) return 'Event';
  if (params.sourceId) return 'Source';
  if (params.projectId) return 'Project';
  if (params.tokenId) return 'API token';
  return 'Organization';
}

/** The caller, as BearerGuard found it. */
export const CurrentPrincipal = createParamDecorator((_: unknown, ctx: ExecutionContext): Principal => {
  const principal = ctx.switchToHttp().getRequest<AuthedRequest>().user;
  if (!principal) throw new AppError('unauthenticated', 'Authentication required');
  return principal;
});

/** The organization this request acts in, as TenantGuard resolved it. */
export const Tenant = createParamDecorator((_: unknown, ctx: ExecutionContext): TenantScope => {
  const tenant = ctx.switchToHttp().getRequest<AuthedRequest>().tenant;
  if (!tenant) throw new Error('route has no tenant scope: it needs a path id and @Authenticated()');
  return tenant;
});

/** Which request an audit entry comes from: the server's request id, and the caller's own X-Request-Id beside it. */
export const Audit = createParamDecorator((_: unknown, ctx: ExecutionContext): AuditContext => {
  const req = ctx.switchToHttp().getRequest<Request & { id?: string }>();
  return { requestId: String(req.id ?? ''), clientRequestId: clientRequestIdOf(req.headers['x-request-id']) };
});
