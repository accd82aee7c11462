import type { ApiToken, Attempt, AuditLogEntry, Delivery, Event, Organization, Project, Replay, Source, User, Webhook } from '@bellhop/database';

import { formatDurations, webhookHealth } from '@bellhop/domain';

const iso = (date: Date | null | undefined): string | null => (date ? date.toISOString() : null);

/** Response shapes of the contract, kept apart from the rows they are built from. */
export const present = {
  user: (u: User) => ({ id: u.id, email: u.email, name: u.name, createdAt: iso(u.createdAt) }),

  organization: (o: Organization) => ({ id: o.id, name: o.name, plan: o.plan }),

  /** `retentionDays` is the effective one: the project's own, else the server's (`defaultRetentionDays`). */
  project: (p: Project, defaultRetentionDays: number) => ({
    id: p.id,
    name: p.name,
    organizationId: p.organizationId,
    retentionDays: p.retentionDays ?? defaultRetentionDays,
    createdAt: iso(p.createdAt),
  }),

  /**
   * Never includes a secret: only the routes that reveal one add it beside the webhook.
   * `retrySchedule` is the effective one: the webhook's own, else the server's (`defaultScheduleMs`).
   */
  webhook: (w: Webhook, defaultScheduleMs: readonly number[], autoDisableAfterMs: number) => ({
    id: w.id,
    projectId: w.projectId,
    name: w.name,
    url: w.url,
    events: w.events,
    headers: w.headers,
    enabled: w.enabled,
    description: w.description,
    disabledReason: w.disabledReason,
    retrySchedule: formatDurations(Array.isArray(w.retryScheduleMs) ? (w.retryScheduleMs as number[]) : defaultScheduleMs),
    format: w.format,
    template: w.format === 'template' ? w.template : null,
    createdBy: w.createdByType && w.createdById ? { type: w.createdByType, id: w.createdById } : null,
    createdAt: iso(w.createdAt),
    updatedAt: iso(w.updatedAt),
    health: webhookHealth(w, autoDisableAfterMs),
  }),

  event: (e: Pick<Event, 'id' | 'type' | 'createdAt' | 'projectId'>) => ({
    id: e.id,
    event: e.type,
    timestamp: iso(e.createdAt),
    projectId: e.projectId,
  }),

  delivery: (d: Omit<Delivery, 'body'>) => ({
    id: d.id,
    webhookId: d.webhookId,
    eventId: d.eventId,
    event: d.eventType,
    status: d.status,
    test: d.test,
    attempts: d.attemptCount,
    lastStatusCode: d.lastStatusCode,
    lastResponseTimeMs: d.lastResponseTimeMs,
    createdAt: iso(d.createdAt),
    nextAttemptAt: d.status === 'pending' ? iso(d.nextAttemptAt) : null,
    completedAt: iso(d.completedAt),
  }),

  attempt: (a: Attempt, body: string) => ({
    id: a.id,
    attempt: a.attempt,
    trigger: a.trigger,
    timestamp: iso(a.createdAt),
    request: { url: a.requestUrl, headers: a.requestHeaders, body },
    response:
      a.responseStatus === null
        ? null
        : { statusCode: a.responseStatus, headers: a.responseHeaders, body: a.responseBody, bodyTruncated: a.responseBodyTruncated },
    responseTimeMs: a.responseTimeMs,
    error: a.errorCode ? { code: a.errorCode, message: a.errorMessage } : null,
  }),

  apiToken: (t: ApiToken) => ({ id: t.id, name: t.name, role: t.role, createdAt: iso(t.createdAt), lastUsedAt: iso(t.lastUsedAt), expiresAt: iso(t.expiresAt) }),

  replay: (r: Replay) => ({
    id: r.id,
    webhookId: r.webhookId,
    status: r.status,
    matched: r.matched,
    queued: r.queued,
    succeeded: r.succeeded,
    failed: r.failed,
    createdAt: iso(r.createdAt),
    completedAt: iso(r.completedAt),
  }),

  /** Never includes the secret: only the creating route adds it beside the source. `url` is what GitHub or GitLab posts to. */
  source: (s: Source, publicUrl: string) => ({
    id: s.id,
    projectId: s.projectId,
    name: s.name,
    type: s.type,
    url: `${publicUrl}/ingest/${s.id}`,
    createdAt: iso(s.createdAt),
  }),

  auditEntry: (e: AuditLogEntry) => ({
    id: e.id,
    action: e.action,
    actor: { type: e.actorType, id: e.actorId },
    target: { type: e.targetType, id: e.targetId },
    createdAt: iso(e.createdAt),
    requestId: e.requestId,
    clientRequestId: e.clientRequestId,
  }),
};
