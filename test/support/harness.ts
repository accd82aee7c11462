import { Receiver } from './receiver';
import { Stack, StackOptions, startStack } from './stack';
import { newTenant, Tenant } from './tenant';

export interface Harness {
  stack: Stack;
  receiver: Receiver;
  /** A fresh tenant (user, organization, project "my-mcp-server") for each test. */
  tenant: Tenant;
}

/**
 * The usual setting of an end-to-end file: the real API and worker, a real receiver on
 * 127.0.0.1, and a tenant of its own for every test. Registers the jest hooks; read the fields
 * inside tests.
 */
export function withStackAndReceiver(tenantName: string, options: StackOptions = {}): Harness {
  const h = {} as Harness;
  beforeAll(async () => {
    h.stack = await startStack(options);
    h.receiver = await new Receiver().start();
  }, 60_000);
  beforeEach(async () => {
    h.tenant = await newTenant(h.stack, tenantName);
  });
  afterAll(async () => {
    await h.receiver?.stop();
    await h.stack?.stop();
  }, 30_000);
  return h;
}
