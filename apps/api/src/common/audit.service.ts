import { Injectable } from '@nestjs/common';
import { Prisma, PrismaService } from '@bellhop/database';
import { newId } from '@bellhop/domain';
import { Principal } from '../auth/principal';

export type AuditAction =
  | 'webhook.created'
  | 'webhook.updated'
  | 'webhook.deleted'
  | 'webhook.secret_revealed'
  | 'webhook.secret_rotated'
  | 'member.added'
  | 'member.role_changed'
  | 'member.removed'
  | 'api_token.created'
  | 'api_token.revoked'
  | 'organization.updated'
  | 'project.updated'
  | 'project.deleted'
  | 'event_type.created'
  | 'event_type.updated'
  | 'event_type.deleted'
  | 'replay.created'
  | 'replay.cancelled'
  | 'source.created'
  | 'source.deleted';

/**
 * Which request an entry comes from, as the `Audit` parameter decorator reads it off the request:
 * the server's own request id (the answer's X-Request-Id) and, apart from it, the caller's own
 * X-Request-Id. The caller's id is theirs to correlate with; it never stands in for ours.
 */
export interface AuditContext {
  requestId: string;
  clientRequestId: string | null;
}

export interface AuditInput extends Partial<AuditContext> {
  organizationId: string;
  principal: Principal;
  action: AuditAction;
  target: { type: string; id: string };
}

/** Who did what to which resource, and in which request. Never a secret: only ids go in. */
@Injectable()
export class AuditService {
  constructor(private readonly prisma: PrismaService) {}

  entry(input: AuditInput): Prisma.AuditLogEntryCreateInput {
    return {
      id: newId('audit'),
      organization: { connect: { id: input.organizationId } },
      action: input.action,
      actorType: input.principal.type,
      actorId: input.principal.id,
      targetType: input.target.type,
      targetId: input.target.id,
      requestId: input.requestId || null,
      clientRequestId: input.clientRequestId ?? null,
    };
  }

  record(input: AuditInput) {
    return this.prisma.auditLogEntry.create({ data: this.entry(input) });
  }
}
