import type { Server } from 'node:http';
import { INestApplication } from '@nestjs/common';
import { Logger } from 'nestjs-pino';
import {
  applySettings,
  BELLHOP_CONFIG,
  BellhopConfig,
  ConfigError,
  explainConfigError,
  HttpTimeouts,
  loadConfig,
  ResolvedSettings,
  resolveSettings,
  settingsSummary,
} from '@bellhop/config';

export type ListenOn = (config: BellhopConfig) => { port: number; started: string };

/** A started app, or the help text that `--help` asked for instead. */
export type StartResult = { app: INestApplication; settings: ResolvedSettings } | { help: string };

/**
 * Starts one of Bellhop's apps and gives it back listening. Settings come from the command line,
 * the environment and the config file, merged into the environment before the app is built (see
 * @bellhop/config's layers.ts); a bad one is a ConfigError that names it and, when it was not the
 * environment, the file or flag it came from. The settings in force are logged without secrets,
 * development defaults and risky settings reported, the HTTP server's timeouts set, shutdown
 * hooked to SIGTERM/SIGINT.
 */
export async function startApp(name: string, create: () => Promise<INestApplication>, listenOn: ListenOn, argv: string[] = process.argv.slice(2)): Promise<StartResult> {
  let settings: ResolvedSettings | undefined;
  try {
    settings = resolveSettings({ argv, program: name });
    if (settings.help !== undefined) return { help: settings.help };
    applySettings(settings);
    loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) throw new ConfigError(explainConfigError(err.message, settings));
    throw err;
  }
  const app = await create();
  const config = app.get<BellhopConfig>(BELLHOP_CONFIG);
  const logger = app.get(Logger);
  logger.log({ settings: settingsSummary(settings, config), configFile: settings.file }, 'Settings in force (a flag is over the environment, which is over the config file, which is over the default)', 'Settings');
  for (const warning of [...settings.warnings, ...config.warnings]) logger.warn(warning);
  app.enableShutdownHooks();
  applyHttpTimeouts(app.getHttpServer() as Server, config.httpTimeouts);
  const { port, started } = listenOn(config);
  await app.listen(port, config.host);
  logger.log(started);
  return { app, settings };
}

/**
 * The settings' timeouts on a Node HTTP server, before it listens. Node checks the request and
 * headers timeouts only every connectionsCheckingInterval (30 s unless told), which would let a
 * 10 s headers timeout run to 40 s: the check runs at a quarter of the headers timeout instead,
 * at most once a second.
 */
export function applyHttpTimeouts(server: Server, timeouts: HttpTimeouts): void {
  server.requestTimeout = timeouts.requestMs;
  server.headersTimeout = timeouts.headersMs;
  server.keepAliveTimeout = timeouts.keepAliveMs;
  // Read by Node when the server starts listening.
  (server as Server & { connectionsCheckingInterval: number }).connectionsCheckingInterval = Math.min(1000, Math.floor(timeouts.headersMs / 4));
}

/**
 * The entry point of each app's main.ts: startApp, with a configuration error (or a bad flag)
 * printed as one line naming the setting and exit code 1, and `--help` printed with exit code 0.
 */
export function runApp(name: string, create: () => Promise<INestApplication>, listenOn: ListenOn): void {
  startApp(name, create, listenOn).then(
    (result) => {
      if ('help' in result) process.stdout.write(result.help, () => process.exit(0));
    },
    (err: Error) => {
      if (err instanceof ConfigError) {
        console.error(`${name}: configuration error: ${err.message}`);
      } else {
        console.error(`${name}: failed to start: ${err.stack ?? err.message}`);
      }
      process.exit(1);
    },
  );
}
