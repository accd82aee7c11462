export * from './config';
export * from './config.module';
export * from './duration';
export * from './settings';
export * from './layers';
