import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { ServeStaticModule } from '@nestjs/serve-static';
import type { NextFunction, Request, Response } from 'express';

/**
 * The nearest directory at or above `from` that holds a package.json: the package root. Found
 * from this file rather than the working directory, so the page is found the same way from
 * dist/apps/api/src/dashboard (npm start, the image) and from apps/api/src/dashboard (ts-jest),
 * whichever directory the process was started in.
 */
export function packageRoot(from: string = __dirname): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    if (dirname(dir) === dir) throw new Error(`no package.json above ${from}`);
  }
}

/** The page's static files: plain HTML, CSS and one script, served as they are (no build step). */
export const DASHBOARD_ROOT = join(packageRoot(), 'apps', 'dashboard');

/**
 * The page shows what receivers answered (bodies and headers an attacker may write), so nothing
 * runs but our own script, nothing is fetched but from this origin, and nobody may frame it.
 */
export const DASHBOARD_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
  "form-action 'none'",
].join('; ');

// Express matches mount paths without regard to case, so these do too: /Dashboard/ is the page.
const DASHBOARD_PATH = /^\/dashboard(?:\/|$)/i;
const DASHBOARD_BARE = /^\/dashboard$/i;

/**
 * Every response under /dashboard gets the page's headers: the files and the 404s alike, which
 * serve-static's own setHeaders would miss. /dashboard itself is sent to /dashboard/ here (the
 * page's links are relative to it) rather than by serve-static, whose redirect would put its own
 * Content-Security-Policy in place of the page's.
 */
export function dashboardMiddleware(req: Request, res: Response, next: NextFunction): void {
  if (!DASHBOARD_PATH.test(req.path)) return next();
  res.setHeader('Content-Security-Policy', DASHBOARD_CSP);
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('Referrer-Policy', 'no-referrer');
  if (DASHBOARD_BARE.test(req.path) && (req.method === 'GET' || req.method === 'HEAD')) {
    const query = req.originalUrl.indexOf('?');
    // Relative, so that it still lands on the page behind a proxy that mounts the API under a prefix.
    res.redirect(301, `dashboard/${query >= 0 ? req.originalUrl.slice(query) : ''}`);
    return;
  }
  next();
}

/**
 * The files under /dashboard and nothing else. renderPath '/' serves index.html for the page itself
 * only: an unknown path under /dashboard falls through to the API's 404 in the error shape rather
 * than to the page, and every other path never reaches these handlers.
 */
export const dashboardModule = ServeStaticModule.forRoot({
  rootPath: DASHBOARD_ROOT,
  serveRoot: '/dashboard',
  renderPath: '/',
  serveStaticOptions: { index: 'index.html', redirect: false, fallthrough: true, dotfiles: 'ignore' },
});
