/** Unit tests sit beside the code (*.spec.ts); end-to-end tests in test/ (*.e2e-spec.ts) boot real apps. */
const moduleNameMapper = {
  '^@bellhop/(.*)$': '<rootDir>/libs/$1/src',
  // ESM only, and exported under the `import` condition alone, which jest's CommonJS resolver never picks.
  '^@octokit/webhooks-methods$': '<rootDir>/node_modules/@octokit/webhooks-methods/dist-node/index.js',
};
const transform = {
  '^.+\\.ts$': ['ts-jest', { tsconfig: '<rootDir>/tsconfig.json', diagnostics: false }],
  // NestJS 12 ships ES modules only; jest on Node 20 loads CommonJS.
  '^.+\\.m?js$': '<rootDir>/test/support/esm-transform.js',
};
const transformIgnorePatterns = ['/node_modules/(?!(@nestjs|uid|load-esm|file-type|strtok3|token-types|@tokenizer|@borewit|@octokit)/)'];
const common = { rootDir: __dirname, testEnvironment: 'node', moduleNameMapper, transform, transformIgnorePatterns };

module.exports = {
  // End-to-end tests wait for real deliveries; a hung one still fails well inside the CI budget.
  testTimeout: 60000,
  reporters: ['default', '<rootDir>/test/support/summary-reporter.js'],
  projects: [
    { ...common, displayName: 'unit', roots: ['<rootDir>/apps', '<rootDir>/libs'], testRegex: '\\.spec\\.ts$' },
    {
      ...common,
      displayName: 'e2e',
      roots: ['<rootDir>/test'],
      testRegex: '\\.e2e-spec\\.ts$',
      globalSetup: '<rootDir>/test/support/global-setup.ts',
    },
  ],
};
