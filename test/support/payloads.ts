import { findEventType } from '@bellhop/domain';

/**
 * A payload `data` that satisfies its type's documented schema: the Bellwether documentation's own
 * example, with a test's extra fields beside it (extra properties are allowed).
 */
export function documented(type: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const definition = findEventType(type);
  if (!definition) throw new Error(`no built-in event type ${type}`);
  return { ...structuredClone(definition.example), ...extra };
}
