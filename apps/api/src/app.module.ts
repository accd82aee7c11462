import { Module } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { JwtModule } from '@nestjs/jwt';
import { PassportModule } from '@nestjs/passport';
import { BellhopConfigModule } from '@bellhop/config';
import { DatabaseModule } from '@bellhop/database';
import { DeliveryQueueModule, REPLAY_DRIVER_OPTIONS, ReplayDriver } from '@bellhop/delivery';
import { HealthModule, MetricsModule, loggerModule } from '@bellhop/observability';
import { RedisModule } from '@bellhop/queue';
import { ApiTokenVerifier } from './auth/api-tokens.service';
import { AuthController } from './auth/auth.controller';
import { BearerGuard, MembershipService, TenantGuard } from './auth/auth.guards';
import { AuthService } from './auth/auth.service';
import { HashPool } from './auth/hash-pool';
import { LoginLimiter } from './auth/login-limiter';
import { JwtStrategy } from './auth/jwt.strategy';
import { AuditService } from './common/audit.service';
import { AuthFailureLimiter, IngestRateLimiter, PublishRateLimiter, RateLimitGuard, SourceFailureLimiter, rateLimitModule } from './common/rate-limit';
import { dashboardModule } from './dashboard/dashboard';
import { DeliveriesController } from './deliveries/deliveries.controller';
import { DeliveriesService } from './deliveries/deliveries.service';
import { TestAttemptWaiters } from './deliveries/test-attempt-waiters';
import { EventTypesController } from './event-types/event-types.controller';
import { EventTypesService } from './event-types/event-types.service';
import { EventsController } from './events/events.controller';
import { EventsService } from './events/events.service';
import { OrganizationsController } from './organizations/organizations.controller';
import { OrganizationsService } from './organizations/organizations.service';
import { ProjectsController } from './projects/projects.controller';
import { ReplaysController } from './replays/replays.controller';
import { ReplaysService } from './replays/replays.service';
import { IngestController } from './sources/ingest.controller';
import { IngestService } from './sources/ingest.service';
import { SourcesController } from './sources/sources.controller';
import { SourcesService } from './sources/sources.service';
import { StatsController } from './stats/stats.controller';
import { StatsService } from './stats/stats.service';
import { WebhooksController } from './webhooks/webhooks.controller';
import { WebhooksService } from './webhooks/webhooks.service';

@Module({
  imports: [
    BellhopConfigModule,
    loggerModule('api'),
    DatabaseModule,
    RedisModule,
    DeliveryQueueModule,
    HealthModule,
    MetricsModule,
    PassportModule,
    JwtModule.register({}),
    rateLimitModule,
    // The dashboard page's static files under /dashboard (its headers: dashboardMiddleware in api.app.ts).
    dashboardModule,
  ],
  controllers: [AuthController, OrganizationsController, ProjectsController, WebhooksController, EventTypesController, EventsController, DeliveriesController, StatsController, ReplaysController, SourcesController, IngestController],
  providers: [
    // Authentication first, so that limits are per resolved credential; BearerGuard limits failed
    // attempts per address itself (AuthFailureLimiter), before a bad token costs a lookup.
    { provide: APP_GUARD, useClass: BearerGuard },
    { provide: APP_GUARD, useClass: RateLimitGuard },
    AuthFailureLimiter,
    PublishRateLimiter,
    SourceFailureLimiter,
    IngestRateLimiter,
    TenantGuard,
    MembershipService,
    ApiTokenVerifier,
    JwtStrategy,
    AuthService,
    // One pool of password hashing for the process: two at a time, 32 waiting, then 429.
    { provide: HashPool, useFactory: () => new HashPool() },
    LoginLimiter,
    AuditService,
    OrganizationsService,
    WebhooksService,
    EventTypesService,
    EventsService,
    DeliveriesService,
    TestAttemptWaiters,
    ReplaysService,
    // The workers drive replays; the API only takes a new replay's first step.
    ReplayDriver,
    { provide: REPLAY_DRIVER_OPTIONS, useValue: { autoStart: false } },
    StatsService,
    SourcesService,
    IngestService,
  ],
})
export class AppModule {}
