import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Browser, chromium } from 'playwright-core';
import { Receiver } from './support/receiver';
import { Stack, startStack } from './support/stack';
import { Tenant, eventually, newTenant } from './support/tenant';
import { documented } from './support/payloads';

/** Debian's package; CI installs it when it is missing (.ci/run). */
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
/** Named by the README: the test writes them fresh on every run. */
const SCREENSHOTS = join(__dirname, '..', 'docs', 'screenshots');
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";
const PASSWORD = 'correct horse battery';
// What a hostile receiver might answer: the page must show it as text, never run it.
const HOSTILE_BODY = JSON.stringify({ ok: true, note: '<img src=x onerror="document.title=\'pwned\'">' });

function expectPageHeaders(headers: Record<string, string>) {
  expect(headers['content-security-policy']).toBe(CSP);
  expect(headers['x-content-type-options']).toBe('nosniff');
  expect(headers['referrer-policy']).toBe('no-referrer');
}

describe('dashboard page', () => {
  let stack: Stack;
  let receiver: Receiver;
  let browser: Browser;

  beforeAll(async () => {
    // A missing browser is a failure, not a skip: the page is only proven in a real one.
    if (!existsSync(CHROMIUM)) throw new Error(`Chromium not found at ${CHROMIUM}: install it (apt-get install -y chromium) or set CHROMIUM_PATH`);
    [stack, receiver, browser] = await Promise.all([
      startStack({ listen: true }),
      new Receiver().start(),
      // Without its sandbox: it refuses root, and containers often lack the namespaces it needs;
      // the browser only ever loads this test's own page from 127.0.0.1.
      chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] }),
    ]);
    receiver.responder = (req) =>
      req.url.startsWith('/down') ? { status: 503, body: 'maintenance' } : { status: 200, body: HOSTILE_BODY, headers: { 'content-type': 'application/json' } };
    mkdirSync(SCREENSHOTS, { recursive: true });
  });
  afterAll(async () => {
    await browser?.close();
    await receiver?.stop();
    await stack?.stop();
  });

  it('serves the page under /dashboard with a strict CSP, nosniff and no-referrer, and leaves the API its 404s and /docs', async () => {
    const bare = await stack.http().get('/dashboard').expect(301);
    expect(bare.headers.location).toBe('dashboard/');
    expectPageHeaders(bare.headers);

    const page = await stack.http().get('/dashboard/').expect(200);
    expect(page.headers['content-type']).toMatch(/^text\/html/);
    expect(page.text).toContain('<script type="module" src="app.js"></script>');
    expectPageHeaders(page.headers);
    const script = await stack.http().get('/dashboard/app.js').expect(200);
    expect(script.headers['content-type']).toMatch(/^(text|application)\/javascript/);
    expectPageHeaders(script.headers);
    const style = await stack.http().get('/dashboard/style.css').expect(200);
    expect(style.headers['content-type']).toMatch(/^text\/css/);

    // Unknown files under /dashboard are not the page: the API's 404, still with the headers.
    const missing = await stack.http().get('/dashboard/nothing-here.js').expect(404);
    expect(missing.body).toEqual({ statusCode: 404, error: 'Not found', code: 'not_found', details: [], requestId: expect.stringMatching(/^req_/) });
    expectPageHeaders(missing.headers);

    // The rest of the API is untouched: its 404 shape, its auth, its docs, and none of the page's headers.
    const unknown = await stack.http().get('/no-such-route').expect(404);
    expect(unknown.body).toEqual({ statusCode: 404, error: 'Not found', code: 'not_found', details: [], requestId: expect.stringMatching(/^req_/) });
    expect(unknown.headers['content-security-policy']).toBeUndefined();
    await stack.http().get('/dashboardx').expect(404);
    await stack.http().get('/projects').expect(401);
    await stack.http().get('/docs-json').expect(200);
    const docs = await stack.http().get('/docs/').expect(200);
    expect(docs.headers['content-security-policy']).toBeUndefined();
  });

  it('logs in, picks the project, shows health and stats, sends a test and shows its attempt, in headless Chromium', async () => {
    const tenant = await newTenant(stack, 'Dana');
    const { crm, secret } = await seed(tenant);

    const page = await browser.newPage({ viewport: { width: 1280, height: 860 }, locale: 'en-US', timezoneId: 'UTC' });
    // Chromium reports a CSP violation as a console error; a failed request shows as a response.
    const problems: string[] = [];
    page.on('console', (msg) => {
      if (msg.type() === 'error' || msg.type() === 'warning') problems.push(`console ${msg.type()}: ${msg.text()}`);
    });
    page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
    page.on('response', (res) => {
      if (res.status() >= 400) problems.push(`${res.status()} ${res.url()}`);
    });

    // Log in through the form.
    const landing = await page.goto(`${stack.url}/dashboard`);
    expect(page.url()).toBe(`${stack.url}/dashboard/`);
    expectPageHeaders(landing!.headers());
    await page.getByLabel('Email').fill(tenant.email);
    await page.getByLabel('Password').fill(PASSWORD);
    await page.screenshot({ path: join(SCREENSHOTS, 'login.png') });
    await page.getByRole('button', { name: 'Log in' }).click();

    // The newest project is picked first; pick the one with the webhooks.
    const projectSelect = page.getByLabel('Project');
    await expect(projectSelect.inputValue()).resolves.not.toBe(tenant.projectId);
    await projectSelect.selectOption({ label: 'my-mcp-server' });
    const ordersCard = page.getByRole('article', { name: 'Orders receiver' });
    const crmCard = page.getByRole('article', { name: 'Legacy CRM' });
    await ordersCard.getByText('healthy').waitFor();
    await crmCard.getByText('failing', { exact: true }).waitFor();
    await crmCard.getByText('Failing since').waitFor();
    await crmCard.getByText('Auto-disable at').waitFor();
    // The 24 h chart, drawn from GET /webhooks/{id}/stats: 24 hourly bars, the deliveries counted.
    const chart = ordersCard.getByRole('img');
    await expect(chart.getAttribute('aria-label')).resolves.toMatch(/^Last 24 h: 30 succeeded, 0 failed, 0 pending; success rate 100\.0 %/);
    expect(await ordersCard.locator('svg g').count()).toBe(24);
    await expect(crmCard.getByRole('img').getAttribute('aria-label')).resolves.toMatch(/^Last 24 h: 0 succeeded, 2 failed/);
    // The signup's owner may reveal a secret.
    await ordersCard.getByRole('button', { name: 'Reveal secret' }).click();
    await ordersCard.getByText(secret).waitFor();
    await ordersCard.getByRole('button', { name: 'Hide secret' }).click();
    await page.screenshot({ path: join(SCREENSHOTS, 'webhooks.png'), fullPage: true });

    // Send test: the page goes to the webhook's deliveries and follows the new one to its attempt.
    const before = receiver.requests.length;
    await ordersCard.getByRole('button', { name: 'Send test' }).click();
    await receiver.waitFor(before + 1);
    const sent = receiver.requests[before];
    const deliveryId = String(sent.headers['x-bellwether-delivery']);
    expect(sent.url).toBe('/orders');
    expect(JSON.parse(sent.body.toString()).event).toBe('baseline.drift_detected');
    const row = page.locator(`tr[data-id="${deliveryId}"]`);
    await row.locator('.badge', { hasText: 'succeeded' }).waitFor();
    expect(await row.locator('td').nth(3).textContent()).toBe('1');
    expect(await row.locator('td').nth(4).textContent()).toBe('200');
    await expect(row.textContent()).resolves.toContain('test');

    // Paging: 25 a page, then the rest through nextCursor.
    const rows = page.locator('table.deliveries tbody tr');
    expect(await rows.count()).toBe(25);
    await page.getByRole('button', { name: 'Load more' }).click();
    await eventually(async () => ((await rows.count()) === 31 ? true : undefined), 5000);
    await expect(page.getByRole('button', { name: 'Load more' }).isHidden()).resolves.toBe(true);
    // The status filter asks the API for that status only.
    await page.getByLabel('Status').selectOption('failed');
    await page.getByText('No failed deliveries.').waitFor();
    await page.getByLabel('Status').selectOption('');
    await row.waitFor();
    await page.screenshot({ path: join(SCREENSHOTS, 'deliveries.png') });

    // The attempt: request and response, headers and bodies; the receiver's body stays text.
    await row.getByRole('link', { name: deliveryId }).click();
    const attempt = page.getByRole('article', { name: /^Attempt 1/ });
    await attempt.waitFor();
    await expect(attempt.textContent()).resolves.toContain('test');
    await expect(attempt.getByText(`POST ${receiver.url}/orders`).count()).resolves.toBe(1);
    for (const summary of await attempt.locator('summary').all()) await summary.click();
    const request = attempt.getByRole('region', { name: 'Request' });
    const response = attempt.getByRole('region', { name: 'Response' });
    await expect(request.locator('pre').textContent()).resolves.toContain('"event": "baseline.drift_detected"');
    await expect(request.getByRole('rowheader', { name: /^x-bellwether-signature$/i }).count()).resolves.toBe(1);
    await expect(response.getByText('Status 200').count()).resolves.toBe(1);
    await expect(response.locator('pre').textContent()).resolves.toContain('<img src=x onerror=');
    expect(await page.locator('img').count()).toBe(0);
    expect(await page.title()).not.toBe('pwned');
    await page.screenshot({ path: join(SCREENSHOTS, 'attempt.png'), fullPage: true });

    // Retry: one more attempt, trigger manual, shown when recorded.
    await page.getByRole('button', { name: 'Retry' }).click();
    await page.getByRole('article', { name: /^Attempt 2 manual/ }).waitFor();
    expect(receiver.requests.filter((r) => r.headers['x-bellwether-delivery'] === deliveryId)).toHaveLength(2);

    // Disable, then enable again, from the failing webhook's page; then replay its failures.
    await page.goto(`${stack.url}/dashboard/#/webhooks/${crm.id}`);
    await page.getByRole('button', { name: 'Disable' }).click();
    await page.getByRole('heading', { level: 1 }).getByText('disabled').waitFor();
    expect((await stack.http().get(`/webhooks/${crm.id}`).set(tenant.auth).expect(200)).body.webhook.enabled).toBe(false);
    await page.getByRole('button', { name: 'Enable' }).click();
    await page.getByRole('button', { name: 'Disable' }).waitFor();
    expect((await stack.http().get(`/webhooks/${crm.id}`).set(tenant.auth).expect(200)).body.webhook.enabled).toBe(true);

    const downBefore = receiver.requests.filter((r) => r.url === '/down').length;
    await page.getByRole('button', { name: 'Replay failed since…' }).click();
    await page.getByText('2 failed deliveries since').waitFor();
    await page.getByRole('button', { name: 'Replay 2' }).click();
    await page.getByText(/: completed; 2 of 2 queued, 0 succeeded, 2 failed$/).waitFor({ timeout: 15_000 });
    expect(receiver.requests.filter((r) => r.url === '/down').length).toBe(downBefore + 2);

    await page.close();
    expect(problems).toEqual([]);
  });

  it('shows the error shape\'s message and request id, and keeps Reveal secret and changes from members', async () => {
    const owner = await newTenant(stack, 'Owner');
    await stack.http().patch(`/organizations/${owner.organizationId}`).set(owner.auth).send({ plan: 'team' }).expect(200);
    const member = await newTenant(stack, 'Member');
    await stack.http().post(`/organizations/${owner.organizationId}/members`).set(owner.auth).send({ email: member.email, role: 'member' }).expect(201);
    await stack.http().post(`/projects/${owner.projectId}/webhooks`).set(owner.auth).send({ url: `${receiver.url}/orders`, events: ['baseline.uploaded'], name: 'Shared' }).expect(201);

    const page = await browser.newPage({ locale: 'en-US', timezoneId: 'UTC' });
    // The refused login is a 401 on purpose, so only the page's own errors count here.
    const errors: string[] = [];
    page.on('pageerror', (err) => errors.push(err.message));
    await page.goto(`${stack.url}/dashboard/`);
    await page.getByLabel('Email').fill(member.email);
    await page.getByLabel('Password').fill('not the password');
    await page.getByRole('button', { name: 'Log in' }).click();
    const alert = page.getByRole('alert');
    await alert.getByText(/\(request req_\w+\)/).waitFor();
    expect(await alert.textContent()).toMatch(/^Invalid email or password \(request req_\w+\)/);
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByLabel('Organization').selectOption(owner.organizationId);
    const card = page.getByRole('article', { name: 'Shared' });
    await card.getByRole('button', { name: 'Send test' }).waitFor();
    await page.getByRole('heading', { level: 1 }).getByText('my-mcp-server').waitFor();
    expect(await card.getByRole('button', { name: 'Reveal secret' }).count()).toBe(0);
    expect(await card.getByRole('button', { name: 'Disable' }).count()).toBe(0);
    // The token lives in sessionStorage only: no cookie is ever set.
    expect(await page.context().cookies()).toEqual([]);
    expect(await page.evaluate("typeof sessionStorage.getItem('bellhop.token')")).toBe('string');

    // Logging out revokes the session and forgets the token.
    const token = await page.evaluate<string>("sessionStorage.getItem('bellhop.token')");
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.getByLabel('Email').waitFor();
    expect(await page.evaluate("sessionStorage.getItem('bellhop.token')")).toBeNull();
    await stack.http().get('/auth/me').set('Authorization', `Bearer ${token}`).expect(401);
    await page.close();
    expect(errors).toEqual([]);
  });

  /** Two webhooks on the real receiver: one healthy with 30 deliveries, one failing with 2; and a newer, empty project. */
  async function seed(tenant: Tenant) {
    const create = (body: object) => stack.http().post(`/projects/${tenant.projectId}/webhooks`).set(tenant.auth).send(body).expect(201);
    const orders = await create({ url: `${receiver.url}/orders`, events: ['baseline.drift_detected'], name: 'Orders receiver' });
    const crm = await create({ url: `${receiver.url}/down`, events: ['baseline.security_finding'], name: 'Legacy CRM' });
    const events = [
      ...Array.from({ length: 30 }, () => ({ event: 'baseline.drift_detected', data: documented('baseline.drift_detected') })),
      ...Array.from({ length: 2 }, () => ({ event: 'baseline.security_finding', data: documented('baseline.security_finding') })),
    ];
    await stack.http().post(`/projects/${tenant.projectId}/events/batch`).set(tenant.auth).send({ events }).expect(202);
    // Every delivery finished: 30 succeeded, 2 failed after their five attempts.
    await eventually(async () => {
      const [ok, failed] = await Promise.all([
        stack.http().get(`/webhooks/${orders.body.webhook.id}/deliveries?status=succeeded&limit=100`).set(tenant.auth),
        stack.http().get(`/webhooks/${crm.body.webhook.id}/deliveries?status=failed&limit=100`).set(tenant.auth),
      ]);
      return ok.body.deliveries.length === 30 && failed.body.deliveries.length === 2 ? true : undefined;
    }, 20_000);
    await stack.http().post('/projects').set(tenant.auth).send({ name: 'billing' }).expect(201);
    return { crm: crm.body.webhook as { id: string }, secret: orders.body.secret as string };
  }
});
