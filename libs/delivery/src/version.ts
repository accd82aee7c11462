import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

/**
 * The version of the root package.json. Searched upwards because this file runs both from
 * libs/delivery/src (ts-jest) and from dist/libs/delivery/src (the built worker), and a JSON
 * import would drag package.json into the compiled output.
 */
function findVersion(): string {
  let dir = __dirname;
  for (let i = 0; i < 8; i++) {
    const candidate = join(dir, 'package.json');
    if (existsSync(candidate)) {
      try {
        const pkg = JSON.parse(readFileSync(candidate, 'utf8')) as { name?: string; version?: string };
        if (pkg.name === 'bellhop' && pkg.version) return pkg.version;
      } catch {
        // An unreadable package.json further down is not ours: keep looking.
      }
    }
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  return '0.0.0';
}

export const BELLHOP_VERSION = findVersion();

/** The User-Agent of every delivery, as the contract names it. */
export const USER_AGENT = `Bellhop-Webhooks/${BELLHOP_VERSION}`;
