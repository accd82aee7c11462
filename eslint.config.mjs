import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**', 'libs/database/src/generated/**', 'bench/results/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { require: 'readonly', module: 'writable', URL: 'readonly', setTimeout: 'readonly', Buffer: 'readonly', setImmediate: 'readonly', performance: 'readonly', process: 'readonly', __dirname: 'readonly', console: 'readonly' } },
    rules: {
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-require-imports': 'off',
      'no-restricted-properties': ['error', { object: 'process', property: 'env', message: 'Read settings from BellhopConfig (libs/config).' }],
    },
  },
  {
    // The dashboard's one script runs in the browser, as an ES module, with no build step.
    files: ['apps/dashboard/**/*.js'],
    languageOptions: {
      sourceType: 'module',
      globals: { window: 'readonly', document: 'readonly', location: 'readonly', sessionStorage: 'readonly', fetch: 'readonly', Node: 'readonly' },
    },
  },
  {
    files: ['libs/config/**', 'test/**', 'bench/**', 'scripts/**', 'prisma.config.ts', '**/*.spec.ts', 'apps/*/src/main.ts'],
    rules: { 'no-restricted-properties': 'off' },
  },
);
