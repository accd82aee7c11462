import { spawn } from 'node:child_process';
import { createCipheriv, randomBytes } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import { bellwetherSignature, secretsKeyId } from '@bellhop/signing';
import { Receiver } from './support/receiver';
import { Stack, createDatabaseFromTemplate, dropDatabase, startStack } from './support/stack';
import { Tenant, createWebhook, eventually, newTenant } from './support/tenant';

const SCRIPT = path.join(__dirname, '..', 'scripts', 'reencrypt-secrets.js');
const SCRIPT_CONNECTION = 'bellhop-reencrypt-secrets';

/** A ciphertext as the releases before key ids stored it: `v1.<iv>.<tag>.<ciphertext>`. */
function legacyCiphertext(plaintext: string, key: Buffer, webhookId: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(Buffer.from(webhookId, 'utf8'));
  const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  return ['v1', iv.toString('base64url'), cipher.getAuthTag().toString('base64url'), ciphertext.toString('base64url')].join('.');
}

interface Hook {
  id: string;
  secret: string;
  /** Rotated-out secrets still signing, newest first. */
  previous: string[];
}

/**
 * An installation whose SECRETS_KEY is replaced: secrets stored under key A keep working while A
 * is listed in SECRETS_KEY_PREVIOUS, `npm run secrets:reencrypt` moves them under B, and then B
 * alone is enough. The stack is restarted on the same database with each set of keys.
 */
describe('rotating SECRETS_KEY', () => {
  const keyA = randomBytes(32).toString('base64');
  const keyB = randomBytes(32).toString('base64');
  const idA = secretsKeyId(Buffer.from(keyA, 'base64'));
  const idB = secretsKeyId(Buffer.from(keyB, 'base64'));
  let databaseUrl: string;
  let db: Client;
  let stack: Stack | undefined;
  let receiver: Receiver;
  let tenant: Tenant;
  // Stored under key A: `rotated` has a current and a previous secret, `legacy` a v1 ciphertext,
  // `deleted` is a deleted webhook (its secret is re-encrypted all the same).
  const hooks = {} as Record<'rotated' | 'legacy' | 'deleted', Hook>;

  beforeAll(async () => {
    receiver = await new Receiver().start();
    databaseUrl = await createDatabaseFromTemplate(`keys${randomBytes(4).toString('hex')}`);
    db = new Client({ connectionString: databaseUrl });
    await db.connect();
  });

  afterAll(async () => {
    await stack?.stop();
    await db?.end();
    await receiver?.stop();
    if (databaseUrl) await dropDatabase(databaseUrl);
  });

  /** Stops the running stack, if any, and starts it again on the same database with these keys. */
  async function restart(secretsKey: string, previous: string[]) {
    await stack?.stop();
    stack = undefined;
    stack = await startStack({ databaseUrl, env: { SECRETS_KEY: secretsKey, SECRETS_KEY_PREVIOUS: previous.join(',') } });
  }

  /** `npm run secrets:reencrypt` as an operator runs it, with these keys. */
  function reencrypt(secretsKey: string, previous: string[], script = SCRIPT): Promise<{ code: number | null; stdout: string; stderr: string }> {
    const env = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', NODE_ENV: 'test', DATABASE_URL: databaseUrl, SECRETS_KEY: secretsKey, SECRETS_KEY_PREVIOUS: previous.join(',') };
    // A directory without a .env file: the settings are exactly these. Batches of one row, so
    // that paging through the rows is exercised too.
    const child = spawn(process.execPath, [script, '--batch-size', '1'], { env, cwd: tmpdir(), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
  }

  /** A webhook's ciphertexts as stored: the secret, then previous_secrets. */
  async function stored(webhookId: string): Promise<string[]> {
    const { rows } = await db.query<{ secret_ciphertext: string; previous_secrets: Array<{ ciphertext: string }> }>('SELECT secret_ciphertext, previous_secrets FROM webhooks WHERE id = $1', [webhookId]);
    return [rows[0].secret_ciphertext, ...rows[0].previous_secrets.map((entry) => entry.ciphertext)];
  }

  async function newHook(): Promise<Hook> {
    const { webhook, secret } = await createWebhook(stack!, tenant, `${receiver.url}/hook`);
    return { id: webhook.id, secret, previous: [] };
  }

  /** Sends the webhook a test event; gives back its delivery and the request that reached the receiver, if one did. */
  async function testDelivery(webhookId: string) {
    const res = await stack!.http().post(`/webhooks/${webhookId}/test?wait=true`).set(tenant.auth).send({}).expect(200);
    const delivery = res.body.delivery;
    const request = receiver.requests.find((req) => req.headers['x-bellwether-delivery'] === delivery.id) ?? null;
    return { delivery, request };
  }

  /** A test event reaches the receiver signed with the webhook's secret and its previous ones. */
  async function expectSigned(hook: Hook) {
    const { delivery, request } = await testDelivery(hook.id);
    expect(delivery.status).toBe('succeeded');
    expect(request).not.toBeNull();
    expect(request!.headers['x-bellwether-signature']).toBe(bellwetherSignature(hook.secret, request!.body));
    const previous = hook.previous.map((secret) => bellwetherSignature(secret, request!.body)).join(', ');
    expect(request!.headers['x-bellwether-signature-previous']).toBe(previous || undefined);
  }

  async function expectRevealed(hook: Hook) {
    const res = await stack!.http().get(`/webhooks/${hook.id}/secret`).set(tenant.auth).expect(200);
    expect(res.body.secret).toBe(hook.secret);
  }

  it('keeps signing with and revealing secrets stored under the old key while it is listed in SECRETS_KEY_PREVIOUS', async () => {
    await restart(keyA, []);
    tenant = await newTenant(stack!);
    hooks.rotated = await newHook();
    const rotation = await stack!.http().post(`/webhooks/${hooks.rotated.id}/secret/rotate`).set(tenant.auth).expect(200);
    hooks.rotated = { ...hooks.rotated, secret: rotation.body.secret, previous: [hooks.rotated.secret] };
    hooks.legacy = await newHook();
    // An installation upgraded from a release before key ids still holds v1 ciphertexts.
    await db.query('UPDATE webhooks SET secret_ciphertext = $2 WHERE id = $1', [hooks.legacy.id, legacyCiphertext(hooks.legacy.secret, Buffer.from(keyA, 'base64'), hooks.legacy.id)]);
    hooks.deleted = await newHook();
    await stack!.http().delete(`/webhooks/${hooks.deleted.id}`).set(tenant.auth).expect(204);
    for (const ciphertext of [...(await stored(hooks.rotated.id)), ...(await stored(hooks.deleted.id))]) expect(ciphertext.startsWith(`v2.${idA}.`)).toBe(true);

    await restart(keyB, [keyA]);
    await expectSigned(hooks.rotated);
    await expectSigned(hooks.legacy);
    await expectRevealed(hooks.rotated);
    await expectRevealed(hooks.legacy);
    // A new secret goes under the new key.
    const fresh = await newHook();
    const [ciphertext] = await stored(fresh.id);
    expect(ciphertext.startsWith(`v2.${idB}.`)).toBe(true);
    await stack!.http().delete(`/webhooks/${fresh.id}`).set(tenant.auth).expect(204);
  });

  it('without the old key, refuses clearly: nothing is signed with a wrong secret, and the re-encryption names the missing key', async () => {
    await restart(keyB, []);
    const before = await stored(hooks.rotated.id);
    const { delivery, request } = await testDelivery(hooks.rotated.id);
    expect(request).toBeNull();
    expect(delivery.status).toBe('failed');
    const detail = await stack!.http().get(`/deliveries/${delivery.id}`).set(tenant.auth).expect(200);
    expect(detail.body.delivery.attempts).toHaveLength(1);
    expect(detail.body.delivery.attempts[0].error).toMatchObject({ code: 'secret_unavailable' });
    const reveal = await stack!.http().get(`/webhooks/${hooks.rotated.id}/secret`).set(tenant.auth).expect(500);
    expect(reveal.body).toMatchObject({ code: 'internal' });
    expect(JSON.stringify(reveal.body)).not.toContain('whsec_');

    const run = await reencrypt(keyB, []);
    expect(run.code).toBe(1);
    for (const hook of [hooks.rotated, hooks.deleted]) {
      expect(run.stderr).toContain(`webhook ${hook.id} left as it was: the secret is encrypted under key ${idA}, which is neither SECRETS_KEY (key ${idB}) nor in SECRETS_KEY_PREVIOUS: add the key ${idA} to SECRETS_KEY_PREVIOUS`);
    }
    expect(run.stderr).toContain(`webhook ${hooks.legacy.id} left as it was: the secret (stored before key ids, v1) opens under no key`);
    expect(run.stdout).toContain(`re-encrypted 0 secret(s) of 0 webhook(s) under key ${idB}; 3 webhook(s) could not be decrypted`);
    // Each names a key to list: the closing advice is to list them, and nothing is called damaged.
    expect(run.stderr).toContain('secrets: add the keys named above to SECRETS_KEY_PREVIOUS and run this again');
    expect(run.stderr).not.toContain('damaged');
    expect(await stored(hooks.rotated.id)).toEqual(before);
  });

  it('moves every stored secret under the new key, without losing a rotation made while it runs', async () => {
    await restart(keyB, [keyA]);
    // The script takes the rows in id order. One holder pauses it at its first row while a
    // rotation of a later row queues behind the other holder; then the script reaches that row
    // with the rotation ahead of it.
    const { rows } = await db.query<{ id: string }>('SELECT id FROM webhooks WHERE id = ANY($1) ORDER BY id', [Object.values(hooks).map((hook) => hook.id)]);
    const gate = rows[0].id;
    const raced = rows.slice(1).find((row) => row.id !== hooks.deleted.id)!.id;
    const holders = [new Client({ connectionString: databaseUrl }), new Client({ connectionString: databaseUrl })];
    await Promise.all(holders.map((holder) => holder.connect()));
    try {
      const pids: number[] = [];
      for (const [holder, id] of [[holders[0], gate], [holders[1], raced]] as const) {
        pids.push((await holder.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid);
        await holder.query('BEGIN');
        await holder.query('SELECT 1 FROM webhooks WHERE id = $1 FOR UPDATE', [id]);
      }
      /** The script's connection (or, with script false, any other) is waiting for a lock held or queued for by `blocker` (any pid but the gate's, when omitted). */
      const blocked = async (script: boolean, blocker?: number) => {
        const { rows: waiting } = await db.query<{ blockers: number[] }>(
          `SELECT pg_blocking_pids(pid) AS blockers FROM pg_stat_activity WHERE datname = current_database() AND (application_name = $1) = $2 AND cardinality(pg_blocking_pids(pid)) > 0`,
          [SCRIPT_CONNECTION, script],
        );
        return waiting.some(({ blockers }) => (blocker === undefined ? !blockers.includes(pids[0]) : blockers.includes(blocker))) ? true : undefined;
      };

      const run = reencrypt(keyB, [keyA]);
      await eventually(() => blocked(true, pids[0]), 30_000);
      const rotation = stack!.http().post(`/webhooks/${raced}/secret/rotate`).set(tenant.auth).then((res) => res);
      await eventually(() => blocked(false, pids[1]));
      await holders[0].query('COMMIT');
      await eventually(() => blocked(true));
      await holders[1].query('COMMIT');
      const [rotated, finished] = await Promise.all([rotation, run]);
      expect(rotated.status).toBe(200);
      expect(finished.stderr).toBe('');
      expect(finished.code).toBe(0);
      // The rotated webhook's two secrets, the v1 secret, the deleted webhook's secret; the new
      // secret of the rotation made during the run is under the new key already.
      expect(finished.stdout).toContain(`re-encrypted 4 secret(s) of 3 webhook(s) under key ${idB}; 0 webhook(s) could not be decrypted`);
      const hook = Object.values(hooks).find((h) => h.id === raced)!;
      Object.assign(hook, { secret: rotated.body.secret, previous: [hook.secret, ...hook.previous] });
    } finally {
      await Promise.all(holders.map((holder) => holder.end()));
    }
    // The secret the rotation handed out is the one stored, and the one it replaced still signs.
    for (const hook of [hooks.rotated, hooks.legacy]) {
      await expectRevealed(hook);
      await expectSigned(hook);
    }

    const { rows: all } = await db.query<{ id: string }>('SELECT id FROM webhooks');
    expect(all).toHaveLength(4);
    for (const { id } of all) for (const ciphertext of await stored(id)) expect(ciphertext.startsWith(`v2.${idB}.`)).toBe(true);

    // Nothing left to do the second time.
    const again = await reencrypt(keyB, [keyA]);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('re-encrypted 0 secret(s) of 0 webhook(s)');

    // A damaged row is no missing key: it is reported as damaged, without the advice to list keys.
    await db.query(`UPDATE webhooks SET previous_secrets = '{}'::jsonb WHERE id = $1`, [hooks.deleted.id]);
    try {
      const damaged = await reencrypt(keyB, []);
      expect(damaged.code).toBe(1);
      expect(damaged.stderr).toContain(`webhook ${hooks.deleted.id} left as it was, damaged: previous_secrets is not a list`);
      expect(damaged.stderr).toContain('reported damaged above open under no key');
      expect(damaged.stderr).not.toContain('add the keys named above');
    } finally {
      await db.query(`UPDATE webhooks SET previous_secrets = '[]'::jsonb WHERE id = $1`, [hooks.deleted.id]);
    }
  });

  it('compiles every module from source when dist/ holds only part of a build, rather than mixing the two', async () => {
    // A checkout in which only the CLI was built, from older code: dist/ holds the signing library
    // alone, without what the script calls.
    const checkout = await mkdtemp(path.join(tmpdir(), 'bellhop-reencrypt-'));
    try {
      const repository = path.join(__dirname, '..');
      await mkdir(path.join(checkout, 'scripts'));
      await copyFile(SCRIPT, path.join(checkout, 'scripts', 'reencrypt-secrets.js'));
      for (const entry of ['libs', 'node_modules', 'tsconfig.json']) await symlink(path.join(repository, entry), path.join(checkout, entry));
      const built = path.join(checkout, 'dist', 'libs', 'signing', 'src');
      await mkdir(built, { recursive: true });
      await writeFile(path.join(built, 'secrets.js'), "'use strict';\nexports.secretsKeyId = () => 'stale';\n");
      await writeFile(path.join(built, 'secret-set.js'), "'use strict';\n");
      const run = await reencrypt(keyB, [], path.join(checkout, 'scripts', 'reencrypt-secrets.js'));
      expect(run).toMatchObject({ code: 0, stderr: '' });
      expect(run.stdout).toContain(`current key ${idB} (SECRETS_KEY)`);
      expect(run.stdout).toContain('re-encrypted 0 secret(s) of 0 webhook(s)');
    } finally {
      await rm(checkout, { recursive: true, force: true });
    }
  });

  it('works with the new key alone once the secrets are re-encrypted', async () => {
    await restart(keyB, []);
    await expectSigned(hooks.rotated);
    await expectSigned(hooks.legacy);
    await expectRevealed(hooks.rotated);
    await expectRevealed(hooks.legacy);
  });
});
