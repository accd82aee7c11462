/**
 * What keeps a JSON value a tenant gives (a schema, a template) from being stored and used as
 * given, or null: a NUL character in a string or a key (Postgres's json types cannot hold it), or
 * a key named __proto__ (neither the JSON Schema validator nor the ORM treats it as a plain key).
 */
export function unstorableJsonProblem(value: unknown): string | null {
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const node = stack.pop();
    if (typeof node === 'string') {
      if (node.includes('\0')) return 'must not contain NUL characters';
    } else if (Array.isArray(node)) {
      stack.push(...node);
    } else if (typeof node === 'object' && node !== null) {
      for (const key of Object.keys(node)) {
        if (key.includes('\0')) return 'must not contain NUL characters';
        if (key === '__proto__') return 'must not have a key named __proto__';
        stack.push((node as Record<string, unknown>)[key]);
      }
    }
  }
  return null;
}
