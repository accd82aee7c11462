import { Logger } from 'nestjs-pino';
import { BELLHOP_CONFIG, BellhopConfig, ConfigError, loadConfig } from '@bellhop/config';
import { createApiApp } from './api.app';

async function main(): Promise<void> {
  try {
    loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`bellhop-api: configuration error: ${err.message}`);
      process.exit(1);
    }
    throw err;
  }
  const app = await createApiApp();
  const config = app.get<BellhopConfig>(BELLHOP_CONFIG);
  const logger = app.get(Logger);
  for (const warning of config.warnings) logger.warn(warning);
  await app.listen(config.port, config.host);
  logger.log(`Bellhop API listening on http://${config.host}:${config.port} (docs at /docs)`);
}

void main();
