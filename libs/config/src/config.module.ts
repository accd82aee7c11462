import { Global, Module } from '@nestjs/common';
import { ConfigModule as NestConfigModule, ConfigService } from '@nestjs/config';
import { BellhopConfig, loadConfig } from './config';

export const BELLHOP_CONFIG = Symbol('BELLHOP_CONFIG');

/**
 * Loads and validates the environment once (through @nestjs/config, which also reads a `.env`
 * file when present) and provides the typed BellhopConfig under BELLHOP_CONFIG.
 */
@Global()
@Module({
  imports: [NestConfigModule.forRoot({ isGlobal: true, cache: true, envFilePath: ['.env'] })],
  providers: [
    {
      provide: BELLHOP_CONFIG,
      inject: [ConfigService],
      useFactory: (): BellhopConfig => loadConfig(process.env),
    },
  ],
  exports: [BELLHOP_CONFIG],
})
export class BellhopConfigModule {}
