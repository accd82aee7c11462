import { Injectable } from '@nestjs/common';
import { Prisma, PrismaService } from '@bellhop/database';
import type { EventType } from '@bellhop/database';
import {
  AppError,
  CATALOG,
  CUSTOM_EVENT_TYPE_LIMITS,
  CUSTOM_EVENT_TYPE_PATTERN,
  type PayloadProblem,
  SUBSCRIPTION_NAMES,
  checkCustomSchema,
  defaultCategoryOf,
  findEventType,
  RESERVED_CATEGORIES,
  isBuiltInTypeName,
  isSourceSubscription,
  sourceKindOf,
  SANDBOX_BUSY_MESSAGE,
  SandboxFailure,
  cachedLinearValidator,
  linearValidator,
  validateEventData,
  validateInSandbox,
} from '@bellhop/domain';
import { TenantScope } from '../auth/principal';
import { AuditContext, AuditService } from '../common/audit.service';
import { CreateEventTypeDto, UpdateEventTypeDto } from './dto/event-type.dto';

/** A transaction, or the client itself: the checks below run inside the caller's transaction. */
type Db = Prisma.TransactionClient | PrismaService;

/** What publishing needs of each payload: where it is wrong, or the category its subscribers are found by. */
export interface PublishCheck {
  problems: PayloadProblem[];
  /** The category of each item's type (by index); undefined for an item with problems. */
  categories: Array<string | undefined>;
}

const iso = (date: Date) => date.toISOString();

/** Schema versions known not to be linear: they go to the sandbox without being read again. */
const sandboxedKeys = new Set<string>();
function rememberSandboxed(key: string): void {
  if (sandboxedKeys.size >= 10_000) sandboxedKeys.clear();
  sandboxedKeys.add(key);
}

/**
 * The sandbox's own refusal (the organization has too many schema checks waiting) as a 429 with
 * Retry-After: 1, about the time its waiting checks take to run.
 */
export async function inSandbox<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    if (error instanceof SandboxFailure && error.reason === 'busy') {
      const busy = new AppError('rate_limited', SANDBOX_BUSY_MESSAGE);
      busy.retryAfterSeconds = 1;
      throw busy;
    }
    throw error;
  }
}

/**
 * The event types a project can publish and subscribe to: the built-in catalog and the project's
 * own types (name, category, optional JSON Schema). Every query is scoped by organization.
 */
@Injectable()
export class EventTypesService {
  constructor(
    private readonly prisma: PrismaService,
    private readonly audit: AuditService,
  ) {}

  static presentBuiltIn(t: (typeof CATALOG)[number]) {
    return { type: t.type, category: t.category, description: t.description, schema: t.schema, example: t.example, source: 'builtin' as const };
  }

  static presentCustom(t: EventType) {
    return {
      type: t.type,
      category: t.category,
      description: t.description,
      schema: t.schema,
      source: 'custom' as const,
      createdAt: iso(t.createdAt),
      updatedAt: iso(t.updatedAt),
    };
  }

  private async assertProject(tenant: TenantScope, projectId: string): Promise<void> {
    const project = await this.prisma.project.findFirst({ where: { id: projectId, organizationId: tenant.organizationId }, select: { id: true } });
    if (!project) throw AppError.notFound('Project');
  }

  async list(tenant: TenantScope, projectId: string, category?: string) {
    await this.assertProject(tenant, projectId);
    const own = await this.prisma.eventType.findMany({
      where: { projectId, organizationId: tenant.organizationId, ...(category ? { category } : {}) },
      orderBy: { type: 'asc' },
    });
    const builtIn = CATALOG.filter((t) => !category || t.category === category).map(EventTypesService.presentBuiltIn);
    return { eventTypes: [...builtIn, ...own.map(EventTypesService.presentCustom)] };
  }

  /** A path's type that no project could have is simply not found (and never reaches a query). */
  private static assertTypeName(type: string): void {
    if (type.length > CUSTOM_EVENT_TYPE_LIMITS.typeMaxLength || !CUSTOM_EVENT_TYPE_PATTERN.test(type)) throw AppError.notFound('Event type');
  }

  async get(tenant: TenantScope, projectId: string, type: string): Promise<EventType> {
    EventTypesService.assertTypeName(type);
    const row = await this.prisma.eventType.findFirst({ where: { projectId, type, organizationId: tenant.organizationId } });
    if (!row) throw AppError.notFound('Event type');
    return row;
  }

  private static async checkSchema(tenant: TenantScope, schema: unknown): Promise<void> {
    if (schema === undefined || schema === null) return;
    const problem = await inSandbox(() => checkCustomSchema(tenant.organizationId, schema));
    if (problem) throw AppError.validation([{ field: 'schema', message: problem }]);
  }

  async create(tenant: TenantScope, projectId: string, dto: CreateEventTypeDto, context: AuditContext) {
    if (isBuiltInTypeName(dto.type)) throw new AppError('conflict', `${dto.type} is a built-in event type name, or in a namespace Bellhop keeps (webhook.*, delivery.*, github.*, gitlab.*)`);
    const category = dto.category ?? defaultCategoryOf(dto.type);
    if (RESERVED_CATEGORIES.includes(category)) throw AppError.validation([{ field: 'category', message: `category "${category}" is Bellhop's own: choose another` }]);
    // Compiled only for a project of the tenant's: nobody spends the sandbox on a stranger's id.
    await this.assertProject(tenant, projectId);
    await EventTypesService.checkSchema(tenant, dto.schema);
    const schema = dto.schema ?? null;
    const row = await this.prisma.$transaction(async (tx) => {
      // The name is taken once: the primary key decides between concurrent creates.
      const [created] = await tx.$queryRaw<Array<{ type: string }>>`
        INSERT INTO event_types (project_id, type, organization_id, category, description, schema)
        SELECT ${projectId}, ${dto.type}, ${tenant.organizationId}, ${category}, ${dto.description ?? null},
               ${schema === null ? null : JSON.stringify(schema)}::jsonb
         WHERE (SELECT count(*) FROM event_types WHERE project_id = ${projectId}) < ${CUSTOM_EVENT_TYPE_LIMITS.maxPerProject}::int
        ON CONFLICT DO NOTHING
        RETURNING type`;
      if (!created) {
        const exists = await tx.eventType.findFirst({ where: { projectId, type: dto.type }, select: { type: true } });
        if (exists) throw new AppError('conflict', `The project already has an event type ${dto.type}`);
        throw AppError.validation([{ field: 'type', message: `a project may have at most ${CUSTOM_EVENT_TYPE_LIMITS.maxPerProject} event types of its own` }]);
      }
      await tx.auditLogEntry.create({ data: this.audit.entry({ ...this.auditBase(tenant, context), action: 'event_type.created', target: { type: 'event_type', id: `${projectId}/${dto.type}` } }) });
      return tx.eventType.findFirstOrThrow({ where: { projectId, type: dto.type } });
    });
    return { eventType: EventTypesService.presentCustom(row) };
  }

  async update(tenant: TenantScope, projectId: string, type: string, dto: UpdateEventTypeDto, context: AuditContext) {
    EventTypesService.assertTypeName(type);
    if (dto.schema !== undefined && dto.schema !== null) {
      // The type first, then the schema's compilation (nobody spends the sandbox on a type that is not there).
      await this.get(tenant, projectId, type);
      await EventTypesService.checkSchema(tenant, dto.schema);
    }
    const schemaChanged = dto.schema !== undefined;
    const row = await this.prisma.$transaction(async (tx) => {
      const [updated] = await tx.$queryRaw<Array<{ type: string }>>`
        UPDATE event_types SET
               description = CASE WHEN ${dto.description !== undefined} THEN ${dto.description ?? null} ELSE description END,
               schema = CASE WHEN ${schemaChanged} THEN ${dto.schema ? JSON.stringify(dto.schema) : null}::jsonb ELSE schema END,
               -- Validators are cached by version: a new schema is compiled on its next use, in every process.
               version = CASE WHEN ${schemaChanged} THEN nextval(pg_get_serial_sequence('event_types', 'version'))::int ELSE version END,
               updated_at = now()
         WHERE project_id = ${projectId} AND type = ${type} AND organization_id = ${tenant.organizationId}
        RETURNING type`;
      if (!updated) throw AppError.notFound('Event type');
      await tx.auditLogEntry.create({ data: this.audit.entry({ ...this.auditBase(tenant, context), action: 'event_type.updated', target: { type: 'event_type', id: `${projectId}/${type}` } }) });
      return tx.eventType.findFirstOrThrow({ where: { projectId, type } });
    });
    return { eventType: EventTypesService.presentCustom(row) };
  }

  /**
   * Deletes a project's own type unless a webhook subscribes to it by name (409). The row is locked
   * first, so a webhook subscribing to it concurrently (which takes a share lock on it) either
   * commits before the check and is seen, or waits and then finds the type gone.
   */
  async remove(tenant: TenantScope, projectId: string, type: string, context: AuditContext): Promise<void> {
    EventTypesService.assertTypeName(type);
    await this.prisma.$transaction(async (tx) => {
      const [locked] = await tx.$queryRaw<Array<{ type: string }>>`
        SELECT type FROM event_types WHERE project_id = ${projectId} AND type = ${type} AND organization_id = ${tenant.organizationId} FOR UPDATE`;
      if (!locked) throw AppError.notFound('Event type');
      const subscribers = await tx.$queryRaw<Array<{ id: string }>>`
        SELECT id FROM webhooks WHERE project_id = ${projectId} AND deleted_at IS NULL AND events @> ARRAY[${type}]::text[] ORDER BY id LIMIT 5`;
      if (subscribers.length > 0) {
        throw new AppError('conflict', `Webhooks subscribe to ${type} by name (${subscribers.map((w) => w.id).join(', ')}): change their events first`);
      }
      await tx.$executeRaw`DELETE FROM event_types WHERE project_id = ${projectId} AND type = ${type}`;
      await tx.auditLogEntry.create({ data: this.audit.entry({ ...this.auditBase(tenant, context), action: 'event_type.deleted', target: { type: 'event_type', id: `${projectId}/${type}` } }) });
    });
  }

  /**
   * Checks payloads before anything is written: a built-in type against its schema (no query), a
   * project's own type against its schema (one query for the batch; schemas compiled once per
   * version), an operational type or an unknown one refused. Problems are JSON Pointers under
   * `at(i)`, the place of item i in the request body. Throws 404 when the project is not the tenant's.
   */
  async checkPublish(tenant: TenantScope, projectId: string, items: Array<{ event: string; data: unknown }>, at: (i: number) => string): Promise<PublishCheck> {
    const problems: PayloadProblem[] = [];
    const categories: Array<string | undefined> = new Array(items.length);
    const custom = [...new Set(items.filter((item) => !findEventType(item.event)).map((item) => item.event))];
    const own = custom.length > 0 ? await this.ownTypes(tenant, projectId, custom) : new Map<string, OwnType>();
    // A small schema of linear-cost keywords is checked here; any other runs in the sandbox, all
    // payloads of one type in one request. Which is which is known once the schema version was read.
    const checked = new Map<number, PayloadProblem[]>();
    for (const type of custom) {
      const own_ = own.get(type);
      if (!own_?.hasSchema) continue;
      const indexes = items.flatMap((item, i) => (item.event === type ? [i] : []));
      const key = `${projectId}\n${type}\n${own_.version}`;
      let local = cachedLinearValidator(key);
      if (!local && !sandboxedKeys.has(key)) local = await this.compileLocally(tenant, projectId, type, key);
      const quick = local ? indexes.map((i) => local!(items[i].data)) : undefined;
      // Valid here: done. Otherwise the sandbox lists every problem (the local check stops at the first).
      const found =
        quick && quick.every((problems) => problems.length === 0)
          ? quick
          : await inSandbox(() => validateInSandbox(tenant.organizationId, key, indexes.map((i) => items[i].data), () => this.schemaOf(tenant, projectId, type)));
      indexes.forEach((index, n) => checked.set(index, found[n]));
    }
    for (const [i, item] of items.entries()) {
      const builtIn = findEventType(item.event);
      let found: PayloadProblem[];
      if (builtIn?.internal) {
        found = [{ path: `${at(i)}/event`, message: `${item.event} is raised by Bellhop itself and cannot be published` }];
      } else if (sourceKindOf(item.event)) {
        found = [{ path: `${at(i)}/event`, message: `${item.event} is published by the project's inbound ${sourceKindOf(item.event)} sources only (POST /ingest/{sourceId})` }];
      } else if (builtIn) {
        found = validateEventData(item.event, item.data).map((p) => ({ path: `${at(i)}/data${p.path}`, message: p.message }));
        if (found.length === 0) categories[i] = builtIn.category;
      } else {
        const type = own.get(item.event);
        if (!type) {
          found = [{ path: `${at(i)}/event`, message: `${item.event} is neither a built-in event type nor one of the project's own (see GET /projects/${projectId}/event-types)` }];
        } else {
          found = (checked.get(i) ?? []).map((p) => ({ path: `${at(i)}/data${p.path}`, message: p.message }));
          if (found.length === 0) categories[i] = type.category;
        }
      }
      problems.push(...found);
    }
    return { problems, categories };
  }

  /** The project's own types of these names (404 when the project is not the tenant's). */
  private async ownTypes(tenant: TenantScope, projectId: string, types: string[]): Promise<Map<string, OwnType>> {
    const rows = await this.prisma.$queryRaw<Array<{ project_id: string; type: string | null; category: string; version: number; has_schema: boolean }>>`
      SELECT p.id AS project_id, t.type, t.category, t.version, t.schema IS NOT NULL AS has_schema
        FROM projects p LEFT JOIN event_types t ON t.project_id = p.id AND t.type = ANY (${types}::text[])
       WHERE p.id = ${projectId} AND p.organization_id = ${tenant.organizationId}`;
    if (rows.length === 0) throw AppError.notFound('Project');
    const found = new Map<string, OwnType>();
    for (const row of rows) {
      if (row.type !== null) found.set(row.type, { category: row.category, version: row.version, hasSchema: row.has_schema });
    }
    return found;
  }

  /** Requests that meet a schema version not compiled yet wait for one read and one compilation. */
  private readonly compiling = new Map<string, Promise<((data: unknown) => PayloadProblem[]) | undefined>>();

  private compileLocally(tenant: TenantScope, projectId: string, type: string, key: string) {
    let pending = this.compiling.get(key);
    if (!pending) {
      pending = this.schemaOf(tenant, projectId, type)
        .then((schema) => {
          const local = linearValidator(key, schema);
          if (!local) rememberSandboxed(key);
          return local;
        })
        .finally(() => this.compiling.delete(key));
      this.compiling.set(key, pending);
    }
    return pending;
  }

  /** A type's schema, read only when the sandbox has not compiled its current version yet. */
  private async schemaOf(tenant: TenantScope, projectId: string, type: string): Promise<object> {
    const row = await this.prisma.eventType.findFirst({ where: { projectId, type, organizationId: tenant.organizationId }, select: { schema: true } });
    // Deleted or emptied meanwhile: nothing to check against.
    return (row?.schema as object | null) ?? {};
  }

  /**
   * Refuses (422) subscriptions the project does not know: names that are neither built in nor
   * the project's own, `<category>.*` of a category it has no type in. The project's own types named
   * are share-locked until the caller's transaction ends, so none is deleted under a new subscriber.
   */
  async assertSubscribable(db: Db, tenant: TenantScope, projectId: string, names: readonly string[]): Promise<void> {
    // Source events (github.push, gitlab.*) are built in by family: GitHub and GitLab name them.
    const unknown = names.filter((name) => !SUBSCRIPTION_NAMES.includes(name) && !isSourceSubscription(name));
    if (unknown.length === 0) return;
    const types = unknown.filter((name) => !name.endsWith('.*'));
    const categories = unknown.filter((name) => name.endsWith('.*')).map((name) => name.slice(0, -2));
    const rows = await db.$queryRaw<Array<{ type: string; category: string }>>`
      SELECT type, category FROM event_types
       WHERE project_id = ${projectId} AND organization_id = ${tenant.organizationId}
         AND (type = ANY (${types}::text[]) OR category = ANY (${categories}::text[]))
       ORDER BY type
         -- Enough to keep the rows from being deleted (the delete locks them FOR UPDATE), without
         -- holding up a change of their description or schema.
         FOR KEY SHARE`;
    const knownTypes = new Set(rows.map((row) => row.type));
    const knownCategories = new Set(rows.map((row) => row.category));
    const missing = [...types.filter((type) => !knownTypes.has(type)), ...categories.filter((c) => !knownCategories.has(c)).map((c) => `${c}.*`)];
    if (missing.length > 0) {
      throw AppError.validation([
        { field: 'events', message: `unknown event types: ${missing.join(', ')} (built in: ${SUBSCRIPTION_NAMES.join(', ')}; or one of the project's own types, or "<category>.*" of one of their categories; or github.<event>, gitlab.<object_kind>, github.*, gitlab.*)` },
      ]);
    }
  }

  /**
   * What a test send of a project's own type carries: the first of its schema's `examples`, else
   * an empty object, and the type's category. Null when the project has no such type.
   */
  async testEventFor(tenant: TenantScope, projectId: string, type: string): Promise<{ category: string; data: Record<string, unknown> } | null> {
    const row = await this.prisma.eventType.findFirst({ where: { projectId, type, organizationId: tenant.organizationId }, select: { schema: true, category: true } });
    if (!row) return null;
    const examples = (row.schema as { examples?: unknown } | null)?.examples;
    const first = Array.isArray(examples) ? examples[0] : undefined;
    return { category: row.category, data: typeof first === 'object' && first !== null && !Array.isArray(first) ? (first as Record<string, unknown>) : {} };
  }

  /** The first of the project's own types in a category (by name), if any. */
  async firstOfCategory(tenant: TenantScope, projectId: string, category: string): Promise<string | undefined> {
    const row = await this.prisma.eventType.findFirst({ where: { projectId, organizationId: tenant.organizationId, category }, orderBy: { type: 'asc' }, select: { type: true } });
    return row?.type;
  }

  private auditBase(tenant: TenantScope, context: AuditContext) {
    return { organizationId: tenant.organizationId, principal: tenant.principal, ...context };
  }
}

interface OwnType {
  category: string;
  /** Changes with every change of the schema (a sequence across all types). */
  version: number;
  hasSchema: boolean;
}
