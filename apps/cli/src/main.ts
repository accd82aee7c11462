#!/usr/bin/env node
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { run } from './cli';

// Plain Node and no framework: a command line tool must answer in a fraction of a second.

/** The package's version, from the nearest package.json above this file (the build puts it one level deeper than the source). */
function packageVersion(): string {
  for (let dir = __dirname; dirname(dir) !== dir; dir = dirname(dir)) {
    const file = join(dir, 'package.json');
    if (existsSync(file)) return (JSON.parse(readFileSync(file, 'utf8')) as { version?: string }).version ?? '0.0.0';
  }
  return '0.0.0';
}

const version = packageVersion();

run(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, env: process.env }, version).then((code) => {
  // exitCode rather than exit(): stdout may still be flushing into a pipe.
  process.exitCode = code;
});
