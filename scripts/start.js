#!/usr/bin/env node
'use strict';
/*
 * One-machine install: apply migrations, then run the API and the worker side by side.
 * Signals are passed on to both; if one of them exits, the other is stopped too.
 */
const { spawn, spawnSync } = require('node:child_process');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const migrate = spawnSync(process.execPath, [path.join(root, 'scripts', 'db.js'), 'migrate'], { stdio: 'inherit' });
if (migrate.status !== 0) process.exit(migrate.status ?? 1);

const apps = {
  api: path.join(root, 'dist', 'apps', 'api', 'src', 'main.js'),
  worker: path.join(root, 'dist', 'apps', 'worker', 'src', 'main.js'),
};
const children = Object.entries(apps).map(([name, entry]) => {
  const child = spawn(process.execPath, [entry], { stdio: 'inherit', env: process.env });
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
