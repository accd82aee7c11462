export * from './logging';
export * from './metrics';
export * from './health';
export * from './public';
export * from './bootstrap';
