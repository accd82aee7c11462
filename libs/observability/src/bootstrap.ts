import { INestApplication } from '@nestjs/common';
import { Logger } from 'nestjs-pino';
import { BELLHOP_CONFIG, BellhopConfig, ConfigError, loadConfig } from '@bellhop/config';

/**
 * Starts one of Bellhop's apps: settings checked first (a bad or missing one stops the process with
 * a message naming it), development defaults reported, shutdown on SIGTERM/SIGINT, then listening.
 */
export function runApp(
  name: string,
  create: () => Promise<INestApplication>,
  listenOn: (config: BellhopConfig) => { port: number; started: string },
): void {
  const start = async () => {
    try {
      loadConfig();
    } catch (err) {
      if (err instanceof ConfigError) {
        console.error(`${name}: configuration error: ${err.message}`);
        process.exit(1);
      }
      throw err;
    }
    const app = await create();
    const config = app.get<BellhopConfig>(BELLHOP_CONFIG);
    const logger = app.get(Logger);
    for (const warning of config.warnings) logger.warn(warning);
    app.enableShutdownHooks();
    const { port, started } = listenOn(config);
    await app.listen(port, config.host);
    logger.log(started);
  };
  start().catch((err: Error) => {
    console.error(`${name}: failed to start: ${err.stack ?? err.message}`);
    process.exit(1);
  });
}
