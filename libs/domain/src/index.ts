export * from './ids';
export * from './errors';
export * from './event-types';
export * from './envelope';
export * from './destination';
export * from './retry';
export * from './webhook-fields';
export * from './payload-validation';
