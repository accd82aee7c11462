import { randomBytes } from 'node:crypto';
import type { Stack } from './stack';

export interface Tenant {
  token: string;
  auth: { Authorization: string };
  userId: string;
  email: string;
  organizationId: string;
  projectId: string;
}

/** Signs a fresh user up (with their own organization) and creates a project: every test its own tenant. */
export async function newTenant(stack: Stack, name = 'Tester'): Promise<Tenant> {
  const email = `${name.toLowerCase().replace(/\W+/g, '')}-${randomBytes(6).toString('hex')}@example.com`;
  const signup = await stack.http().post('/auth/signup').send({ email, password: 'correct horse battery', name }).expect(201);
  const token = signup.body.session.token as string;
  const auth = { Authorization: `Bearer ${token}` };
  const project = await stack.http().post('/projects').set(auth).send({ name: 'my-mcp-server' }).expect(201);
  return { token, auth, userId: signup.body.user.id, email, organizationId: signup.body.organization.id, projectId: project.body.project.id };
}

export async function createWebhook(stack: Stack, tenant: Tenant, url: string, events = ['baseline.drift_detected']) {
  const res = await stack.http().post(`/projects/${tenant.projectId}/webhooks`).set(tenant.auth).send({ url, events }).expect(201);
  return { webhook: res.body.webhook as { id: string; url: string }, secret: res.body.secret as string };
}

/** Polls until `check` returns a value (not undefined), or fails after `timeoutMs`. */
export async function eventually<T>(check: () => Promise<T | undefined>, timeoutMs = 15_000, intervalMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms${last ? `: ${String(last)}` : ''}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
