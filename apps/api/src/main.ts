import { runApp } from '@bellhop/observability';
import { createApiApp } from './api.app';

runApp('bellhop-api', createApiApp, (config) => ({
  port: config.port,
  started: `Bellhop API listening on http://${config.host}:${config.port} (docs at /docs)`,
}));
