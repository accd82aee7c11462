export * from './prisma.service';
export * from './database.module';
export * from './errors';
export { Prisma } from './generated/prisma/client';
export type { Role, Plan, DeliveryStatus, AttemptTrigger } from './generated/prisma/enums';
export type { User, Session, Organization, Membership, ApiToken, Project, Webhook, Event, EventType, Delivery, Attempt, AuditLogEntry, Replay, Source } from './generated/prisma/client';
export * from './batcher';
