import { Public } from './public';
import { Controller, Get, Inject, Injectable, Module, ServiceUnavailableException } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { HealthCheckService, HealthIndicatorService, TerminusModule } from '@nestjs/terminus';
import { Redis } from 'ioredis';
import { PrismaService } from '@bellhop/database';
import { REDIS } from '@bellhop/queue';


@Injectable()
export class DependencyIndicators {
  constructor(
    private readonly indicators: HealthIndicatorService,
    private readonly prisma: PrismaService,
    @Inject(REDIS) private readonly redis: Redis,
  ) {}

  async postgres() {
    const indicator = this.indicators.check('postgres');
    try {
      await withTimeout(this.prisma.$queryRaw`SELECT 1`, 2000);
      return indicator.up();
    } catch (err) {
      return indicator.down({ message: (err as Error).message.slice(0, 200) });
    }
  }

  async redisUp() {
    const indicator = this.indicators.check('redis');
    try {
      await withTimeout(this.redis.ping(), 2000);
      return indicator.up();
    } catch (err) {
      return indicator.down({ message: (err as Error).message.slice(0, 200) });
    }
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    }),
  ]);
}

@ApiTags('operations')
@Public()
@Controller('health')
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly deps: DependencyIndicators,
  ) {}

  @Get()
  @ApiOperation({ summary: 'Liveness' })
  live() {
    return { status: 'ok', time: new Date().toISOString() };
  }

  @Get('ready')
  @ApiOperation({ summary: 'Readiness: 200 when Postgres and Redis answer, else 503 naming the one that failed' })
  async ready() {
    try {
      return await this.health.check([() => this.deps.postgres(), () => this.deps.redisUp()]);
    } catch (err) {
      if (err instanceof ServiceUnavailableException) throw err;
      throw new ServiceUnavailableException({ status: 'error' });
    }
  }
}

@Module({
  imports: [TerminusModule.forRoot({ errorLogStyle: 'json' })],
  controllers: [HealthController],
  providers: [DependencyIndicators],
})
export class HealthModule {}
