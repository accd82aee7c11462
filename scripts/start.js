#!/usr/bin/env node
'use strict';
/*
 * One-machine install: apply migrations, then run the API and the worker side by side.
 * Signals are passed on to both; if one of them exits, the other is stopped too.
 * Flags (`npm start -- --port 3100 --worker-concurrency 20 --config bellhop.yaml`) go to both apps:
 * each takes every setting, and uses its own.
 */
const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { NODE_FLAGS, appEnvironment } = require('./node-runtime');

// What @nestjs/config does for the apps: a .env file in the working directory, the environment first.
// Read here too, or the migrations below could go to another database than the one the apps use.
if (fs.existsSync('.env')) process.loadEnvFile('.env');

const root = path.resolve(__dirname, '..');
const args = process.argv.slice(2);
const apps = {
  api: path.join(root, 'dist', 'apps', 'api', 'src', 'main.js'),
  worker: path.join(root, 'dist', 'apps', 'worker', 'src', 'main.js'),
};

if (args.includes('--help') || args.includes('-h')) {
  // Both apps take the same flags.
  process.exit(spawnSync(process.execPath, [apps.api, ...args], { stdio: 'inherit' }).status ?? 1);
}

// The migrations go to the database the apps will use, wherever DATABASE_URL is given: a flag, the
// environment or the config file. Anything else wrong in the settings is the apps' to report.
let settings;
try {
  settings = require(path.join(root, 'dist', 'libs', 'config', 'src', 'layers.js')).resolveSettings({ argv: args, env: process.env, program: 'bellhop' });
} catch (err) {
  console.error(`bellhop: configuration error: ${err.message}`);
  process.exit(1);
}
const migrateEnv = { ...process.env };
if (settings.env.DATABASE_URL) migrateEnv.DATABASE_URL = settings.env.DATABASE_URL;
const migrate = spawnSync(process.execPath, [path.join(root, 'scripts', 'db.js'), 'migrate'], { stdio: 'inherit', env: migrateEnv });
if (migrate.status !== 0) process.exit(migrate.status ?? 1);

const children = Object.entries(apps).map(([name, entry]) => {
  // Heap and allocator sized to keep each app within 256 MB through a burst (node-runtime.js).
  const child = spawn(process.execPath, [...NODE_FLAGS, entry, ...args], { stdio: 'inherit', env: appEnvironment() });
  child.name = name;
  return child;
});

let stopping = false;
function stop(signal) {
  if (stopping) return;
  stopping = true;
  for (const child of children) if (child.exitCode === null) child.kill(signal);
}
process.on('SIGINT', () => stop('SIGINT'));
process.on('SIGTERM', () => stop('SIGTERM'));

let remaining = children.length;
let failed = false;
for (const child of children) {
  child.on('exit', (code, signal) => {
    if (!stopping) {
      console.error(`bellhop: the ${child.name} exited (${signal ?? `code ${code}`}); stopping the rest`);
      failed = true;
      stop('SIGTERM');
    }
    remaining -= 1;
    if (remaining === 0) process.exit(failed ? 1 : 0);
  });
}
