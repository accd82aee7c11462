'use strict';
/*
 * How Node runs Bellhop's API and worker, wherever they are started from this package
 * (scripts/start.js, the benchmark). The Dockerfile, docker-compose.yml, package.json's start
 * scripts and the systemd units say the same: change them together.
 *
 * - --max-old-space-size: with a heap limit of 2 GB or more (the default on any machine with
 *   16 GB), V8 lets the old generation grow to four times what survived its last full collection
 *   before it collects again; under a limit of 512 MB it grows by about 1.4 times. A burst of
 *   20,000 publishes, with about 60 MB of live objects, took each app to 330-450 MB of RSS, nearly
 *   all of it garbage waiting for a collection. The limit is also a ceiling: an app whose live
 *   objects pass it exits (and its supervisor restarts it) rather than taking the machine's memory.
 * - --max-semi-space-size is left at its default (16 MB): 8 MB cost 6-10 % more CPU per event in
 *   the bench's burst for no lower peak.
 * - MALLOC_ARENA_MAX: glibc gives every thread that allocates (V8's compilers and garbage
 *   collector, libuv's pool) an arena of its own, and seldom hands their freed memory back; two
 *   arenas are shared by all. The environment's own value wins.
 */
const DEFAULT_FLAGS = ['--max-old-space-size=512'];

/** The flags, less any that NODE_OPTIONS sets itself (flags on the command line would win over it). */
function nodeFlags(nodeOptions = process.env.NODE_OPTIONS || '') {
  return DEFAULT_FLAGS.filter((flag) => !nodeOptions.includes(flag.split('=')[0]));
}

const NODE_FLAGS = nodeFlags();

/** The environment for an app: `base` with the allocator's setting added where `base` has none. */
function appEnvironment(base = process.env) {
  return { MALLOC_ARENA_MAX: '2', ...base };
}

module.exports = { NODE_FLAGS, nodeFlags, appEnvironment };
