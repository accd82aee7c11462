import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

const ROOT = resolve(__dirname, '..', '..', '..');

/** Every module that main.ts loads, following relative and @bellhop/* imports through the source. */
function packagesLoadedFrom(entry: string): Set<string> {
  const packages = new Set<string>();
  const seen = new Set<string>();
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    const source = readFileSync(file, 'utf8');
    // `import type` is erased by the compiler and loads nothing.
    const statements = /^(?:import|export)\s+(?!type\b)[^'"]*?from\s+'([^']+)'|^import\s+'([^']+)'|require\('([^']+)'\)/gm;
    for (const [, imported, sideEffect, required] of source.matchAll(statements)) {
      const specifier = imported ?? sideEffect ?? required;
      if (specifier.startsWith('.')) visit(resolveSource(join(dirname(file), specifier)));
      else if (specifier.startsWith('@bellhop/')) visit(resolveSource(join(ROOT, 'libs', specifier.slice('@bellhop/'.length), 'src')));
      else packages.add(specifier);
    }
  };
  visit(entry);
  return packages;
}

function resolveSource(path: string): string {
  for (const candidate of [`${path}.ts`, join(path, 'index.ts')]) if (existsSync(candidate)) return candidate;
  throw new Error(`cannot resolve ${path}`);
}

describe('the CLI entry point', () => {
  it('loads only commander and Node built-ins (no Nest, no Prisma): it must start in a fraction of a second', () => {
    const packages = [...packagesLoadedFrom(join(__dirname, 'main.ts'))];
    expect(packages.filter((name) => !name.startsWith('node:'))).toEqual(['commander']);
  });
});
