/** Unit tests sit beside the code (*.spec.ts); end-to-end tests in test/ (*.e2e-spec.ts) boot real apps. */
const moduleNameMapper = {
  '^@bellhop/(.*)$': '<rootDir>/libs/$1/src',
};
const transform = {
  '^.+\\.ts$': ['ts-jest', { tsconfig: '<rootDir>/tsconfig.json', isolatedModules: true, diagnostics: false }],
};
module.exports = {
  projects: [
    {
      displayName: 'unit',
      rootDir: __dirname,
      testEnvironment: 'node',
      roots: ['<rootDir>/apps', '<rootDir>/libs'],
      testRegex: '\\.spec\\.ts$',
      moduleNameMapper,
      transform,
    },
    {
      displayName: 'e2e',
      rootDir: __dirname,
      testEnvironment: 'node',
      roots: ['<rootDir>/test'],
      testRegex: '\\.e2e-spec\\.ts$',
      moduleNameMapper,
      transform,
      testTimeout: 60000,
      globalSetup: '<rootDir>/test/support/global-setup.ts',
    },
  ],
};
