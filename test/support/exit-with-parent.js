'use strict';
/*
 * Preloaded (`node --require`) into the worker processes the fault tests start: a worker whose test
 * run died (jest killed, Ctrl-C) exits within half a second instead of living on, sweeping the
 * next run's freshly created database and taking its deliveries. The app itself is untouched.
 */
const { setInterval } = require('node:timers');

const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent) process.kill(process.pid, 'SIGKILL');
}, 500).unref();
