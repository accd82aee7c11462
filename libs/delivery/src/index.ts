export * from './dispatcher';
export * from './delivery-queue.module';
export * from './version';
export * from './http-sender';
export * from './in-flight-limiter';
export * from './delivery.service';
export * from './sweeper';
export * from './delivery-engine.module';
