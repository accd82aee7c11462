export * from './secrets';
export * from './signature';
export * from './secret-set';
