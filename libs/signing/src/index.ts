export * from './secrets';
export * from './signature';
export * from './secret-set';
export * from './inbound';
