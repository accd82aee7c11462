#!/usr/bin/env node
'use strict';
/*
 * Re-encrypts the stored webhook secrets under the current SECRETS_KEY, so that a key listed in
 * SECRETS_KEY_PREVIOUS can be removed from it.
 *
 *   npm run secrets:reencrypt [-- --batch-size N]
 *
 * Reads DATABASE_URL, SECRETS_KEY, SECRETS_KEY_PREVIOUS and NODE_ENV (and a `.env` file in the
 * working directory) exactly as the apps do. Every webhook, deleted ones included, whose secret or
 * one of whose previous secrets (`previous_secrets`) is not under the current key is rewritten
 * with each such ciphertext re-encrypted under it. The webhooks table holds every ciphertext of
 * the schema: API tokens and passwords are stored as hashes, which no key opens.
 *
 * Safe while the apps are serving, and to run again. Each row is rewritten in its own
 * transaction under its row lock (SELECT ... FOR UPDATE), read after the lock is taken: a secret
 * rotation (POST /webhooks/{id}/secret/rotate, one UPDATE of the row) either commits first, and
 * then its new secret is what gets re-encrypted, or waits for the lock and then moves the
 * re-encrypted secret into previous_secrets. Rows already under the current key are not touched.
 *
 * Exit status 0 when every stored secret is under the current key; 1 when some row opens under no
 * key of SECRETS_KEY and SECRETS_KEY_PREVIOUS (each is listed, naming the key id it needs, and left
 * as it was), or on any other error.
 *
 * It runs the built code (dist/, from `npm run build`, as in the Docker image); in a checkout
 * without a build it compiles the same sources on the fly with ts-node (a development dependency).
 */
const fs = require('node:fs');
const path = require('node:path');
const { Client } = require('pg');

const root = path.resolve(__dirname, '..');

function fail(message) {
  console.error(`secrets: ${message}`);
  process.exit(1);
}

let sourcesRegistered = false;

/** A module of the libraries, built when there is a build, else from its TypeScript source. */
function load(modulePath) {
  const built = path.join(root, 'dist', `${modulePath}.js`);
  if (fs.existsSync(built)) return require(built);
  if (!sourcesRegistered) {
    try {
      require('ts-node').register({ transpileOnly: true, project: path.join(root, 'tsconfig.json') });
    } catch {
      fail('no build found in dist/: run npm run build first');
    }
    sourcesRegistered = true;
  }
  return require(path.join(root, `${modulePath}.ts`));
}

function options(args) {
  let batchSize = 100;
  for (let i = 0; i < args.length; i += 1) {
    if (args[i] === '--batch-size' && /^\d+$/.test(args[i + 1] ?? '') && Number(args[i + 1]) >= 1) {
      batchSize = Number(args[i + 1]);
      i += 1;
    } else {
      fail('usage: reencrypt-secrets.js [--batch-size N]');
    }
  }
  return { batchSize };
}

/**
 * The next webhooks after `afterId` (in id order) with a ciphertext not under the current key:
 * the secret, or an entry of previous_secrets (a list that is not a list, or an entry without a
 * ciphertext, is picked too, so that it is reported rather than passed over).
 */
const PENDING = `
  SELECT id FROM webhooks
   WHERE id > $1
     AND (NOT starts_with(secret_ciphertext, $2)
          OR CASE WHEN jsonb_typeof(previous_secrets) = 'array'
                  THEN EXISTS (SELECT 1 FROM jsonb_array_elements(previous_secrets) AS p(entry)
                                WHERE p.entry->>'ciphertext' IS NULL OR NOT starts_with(p.entry->>'ciphertext', $2))
                  ELSE true END)
   ORDER BY id
   LIMIT $3`;

async function main() {
  const { batchSize } = options(process.argv.slice(2));
  // What @nestjs/config does for the apps: a .env file in the working directory, the environment first.
  if (fs.existsSync('.env')) process.loadEnvFile('.env');
  const config = load('libs/config/src/config');
  const secrets = load('libs/signing/src/secrets');
  const secretSet = load('libs/signing/src/secret-set');
  if (typeof config.loadSecretsKeys !== 'function' || typeof secretSet.reencryptWebhookSecrets !== 'function') {
    fail('the build in dist/ is older than this script: run npm run build');
  }

  let keys;
  const warnings = [];
  try {
    keys = config.loadSecretsKeys(process.env, warnings);
  } catch (err) {
    fail(err.message);
  }
  for (const warning of warnings) console.error(`secrets: ${warning}`);
  const ring = secrets.secretsKeyRing(keys);
  const currentId = secrets.secretsKeyId(ring.current);
  const previousIds = ring.previous.map(secrets.secretsKeyId);
  console.log(`secrets: current key ${currentId} (SECRETS_KEY); previous keys: ${previousIds.length ? `${previousIds.join(', ')} (SECRETS_KEY_PREVIOUS)` : 'none'}`);

  // Named, so that an operator (or a test) can tell its connection apart in pg_stat_activity.
  const client = new Client({ connectionString: process.env.DATABASE_URL || 'postgresql://postgres@127.0.0.1:5432/bellhop', application_name: 'bellhop-reencrypt-secrets' });
  await client.connect();
  const prefix = secrets.ciphertextPrefix(ring.current);
  const counts = { webhooks: 0, secrets: 0, failed: 0 };
  try {
    let after = '';
    for (;;) {
      const { rows } = await client.query(PENDING, [after, prefix, batchSize]);
      if (rows.length === 0) break;
      for (const { id } of rows) {
        after = id;
        await client.query('BEGIN');
        try {
          const locked = await client.query('SELECT secret_ciphertext, previous_secrets FROM webhooks WHERE id = $1 FOR UPDATE', [id]);
          let result = null;
          if (locked.rows.length > 0) {
            const [row] = locked.rows;
            try {
              result = secretSet.reencryptWebhookSecrets({ id, secretCiphertext: row.secret_ciphertext, previousSecrets: row.previous_secrets }, ring);
            } catch (err) {
              counts.failed += 1;
              console.error(`secrets: webhook ${id} left as it was: ${err.message}`);
            }
          }
          // updated_at stays: nothing a user sees has changed.
          if (result && result.reencrypted > 0) {
            await client.query('UPDATE webhooks SET secret_ciphertext = $2, previous_secrets = $3::jsonb WHERE id = $1', [
              id,
              result.secretCiphertext,
              JSON.stringify(result.previousSecrets),
            ]);
            counts.webhooks += 1;
            counts.secrets += result.reencrypted;
          }
          await client.query('COMMIT');
        } catch (err) {
          await client.query('ROLLBACK').catch(() => undefined);
          throw err;
        }
      }
    }
  } finally {
    await client.end().catch(() => undefined);
  }

  console.log(`secrets: re-encrypted ${counts.secrets} secret(s) of ${counts.webhooks} webhook(s) under key ${currentId}; ${counts.failed} webhook(s) could not be decrypted`);
  if (counts.failed > 0) {
    console.error('secrets: add the keys named above to SECRETS_KEY_PREVIOUS and run this again; until then, keep every key that is listed there now');
    process.exit(1);
  }
  if (previousIds.length > 0) {
    console.log('secrets: every stored secret is under SECRETS_KEY: once every API and worker process runs with this SECRETS_KEY, SECRETS_KEY_PREVIOUS may be emptied (then restart them)');
  }
}

main().then(
  () => process.exit(0),
  (err) => fail(err && err.message ? err.message : String(err)),
);
