/** True for Prisma's unique-constraint violation (P2002): the answer "already exists", not a crash. */
export function isUniqueViolation(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: string }).code === 'P2002';
}
