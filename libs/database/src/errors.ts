/** True for Prisma's unique-constraint violation (P2002): the answer "already exists", not a crash. */
export function isUniqueViolation(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: string }).code === 'P2002';
}

/** SQLSTATE classes and codes that say "try again": the connection, not the statement, failed. */
const TRANSIENT_SQLSTATE = /^(08|40001|40P01|53|57P0[123]|55P03)/;
/** Connection-level failures surfaced by node-postgres or the Prisma adapter without a SQLSTATE. */
const TRANSIENT_MESSAGE = /ECONNRESET|ECONNREFUSED|EPIPE|ETIMEDOUT|Connection terminated|connection (?:is )?closed|Client has encountered a connection error|terminating connection|timeout exceeded when trying to connect/i;

/**
 * True when a database error is worth retrying as it is: a killed or lost connection, a
 * deadlock, a serialization failure, the server starting up or shutting down. Not for errors
 * that the same statement would meet again (constraint violations, bad SQL).
 */
export function isTransientDatabaseError(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const e = err as { code?: unknown; message?: unknown; meta?: { driverAdapterError?: { cause?: { originalCode?: unknown; kind?: unknown } } } };
  const cause = e.meta?.driverAdapterError?.cause;
  const sqlState = typeof cause?.originalCode === 'string' ? cause.originalCode : typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code) ? e.code : '';
  if (sqlState && TRANSIENT_SQLSTATE.test(sqlState)) return true;
  if (cause?.kind === 'TransactionWriteConflict') return true;
  // P1001: can't reach the server; P1017: the server closed the connection; P2034: write conflict or deadlock.
  if (e.code === 'P1001' || e.code === 'P1017' || e.code === 'P2034') return true;
  return typeof e.message === 'string' && TRANSIENT_MESSAGE.test(e.message);
}
