export * from './secrets';
export * from './signature';
