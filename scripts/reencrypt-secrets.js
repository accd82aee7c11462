#!/usr/bin/env node
'use strict';
/*
 * Re-encrypts the stored webhook and inbound source secrets under the current SECRETS_KEY, so that
 * a key listed in SECRETS_KEY_PREVIOUS can be removed from it.
 *
 *   npm run secrets:reencrypt [-- --batch-size N]
 *
 * Reads DATABASE_URL, SECRETS_KEY, SECRETS_KEY_PREVIOUS and NODE_ENV (and a `.env` file in the
 * working directory) exactly as the apps do. Every webhook, deleted ones included, whose secret or
 * one of whose previous secrets (`previous_secrets`) is not under the current key is rewritten
 * with each such ciphertext re-encrypted under it; so is every inbound source whose secret is not.
 * The webhooks and sources tables hold every ciphertext of the schema: API tokens and passwords
 * are stored as hashes, which no key opens.
 *
 * Safe while the apps are serving, and to run again. Each row is rewritten in its own
 * transaction under its row lock (SELECT ... FOR UPDATE), read after the lock is taken: a secret
 * rotation (POST /webhooks/{id}/secret/rotate, one UPDATE of the row) either commits first, and
 * then its new secret is what gets re-encrypted, or waits for the lock and then moves the
 * re-encrypted secret into previous_secrets. Rows already under the current key are not touched.
 * A source's secret never changes after creation; a source deleted meanwhile is simply gone.
 *
 * Exit status 0 when every stored secret is under the current key; 1 when some row opens under no
 * key of SECRETS_KEY and SECRETS_KEY_PREVIOUS (each is listed, naming the key id it needs, and left
 * as it was) or is damaged (listed as such, and left as it was: no key opens it), or on any other
 * error.
 *
 * It runs the built code (dist/, from `npm run build`, as in the Docker image) when dist/ holds
 * every module it uses, each with everything it calls; otherwise (no build, or a partial or older
 * one, such as the CLI's alone) it compiles all of them from source on the fly with ts-node (a
 * development dependency). Never some of each: two compilations of the same code would each have
 * their own classes (an error of one is no instance of the other's) and could disagree.
 */
const fs = require('node:fs');
const path = require('node:path');
const { Client } = require('pg');

const root = path.resolve(__dirname, '..');

function fail(message) {
  console.error(`secrets: ${message}`);
  process.exit(1);
}

/** The library modules this script uses, and what it takes from each. */
const MODULES = {
  config: { path: 'libs/config/src/config', uses: ['loadSecretsKeys'] },
  layers: { path: 'libs/config/src/layers', uses: ['resolveSettings', 'applySettings'] },
  secrets: { path: 'libs/signing/src/secrets', uses: ['SecretsKeyError', 'ciphertextPrefix', 'decryptSecret', 'encryptSecret', 'secretsKeyId', 'secretsKeyRing'] },
  secretSet: { path: 'libs/signing/src/secret-set', uses: ['reencryptWebhookSecrets'] },
};

/** Whether `loaded` has everything this script takes from each module. */
function complete(loaded) {
  return Object.entries(MODULES).every(([name, { uses }]) => uses.every((member) => typeof loaded[name][member] === 'function'));
}

/** The modules from dist/ when it holds all of them, complete; else null. */
function loadBuilt() {
  const loaded = {};
  for (const [name, { path: modulePath }] of Object.entries(MODULES)) {
    const built = path.join(root, 'dist', `${modulePath}.js`);
    if (!fs.existsSync(built)) return null;
    try {
      loaded[name] = require(built);
    } catch {
      return null;
    }
  }
  return complete(loaded) ? loaded : null;
}

/** Every module from the build, or every one from its TypeScript source (see the top of this file). */
function loadModules() {
  const built = loadBuilt();
  if (built) return built;
  try {
    require('ts-node').register({ transpileOnly: true, project: path.join(root, 'tsconfig.json') });
  } catch {
    fail('no complete build in dist/, and no ts-node to compile the sources: run npm run build first');
  }
  const loaded = {};
  for (const [name, { path: modulePath }] of Object.entries(MODULES)) loaded[name] = require(path.join(root, `${modulePath}.ts`));
  if (!complete(loaded)) fail('the sources in libs/ lack what this script uses');
  return loaded;
}

/**
 * Counts and reports a row left as it was. Only a secret under a key that is not configured
 * (SecretsKeyError) is fixed by listing that key in SECRETS_KEY_PREVIOUS; any other failure is a
 * damaged row (an altered or unreadable ciphertext, previous_secrets that is not a list), which no
 * key opens.
 */
function reportLeft(secrets, failures, what, id, err) {
  if (err instanceof secrets.SecretsKeyError) {
    failures.unknownKey += 1;
    console.error(`secrets: ${what} ${id} left as it was: ${err.message}`);
  } else {
    failures.damaged += 1;
    console.error(`secrets: ${what} ${id} left as it was, damaged: ${err.message}`);
  }
}

/** Rows left as they were, by cause. */
const failures = { unknownKey: 0, damaged: 0 };

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

/** The next inbound sources after `afterId` (in id order) whose secret is not under the current key. */
const PENDING_SOURCES = `
  SELECT id FROM sources WHERE id > $1 AND NOT starts_with(secret_ciphertext, $2) ORDER BY id LIMIT $3`;

/**
 * Re-encrypts the sources' secrets, each row under its lock, bound to the source id as when it was
 * written. Counts into `counts`; a secret that opens under no key is reported and left as it was.
 */
async function reencryptSources(client, secrets, ring, prefix, batchSize, counts) {
  let after = '';
  for (;;) {
    const { rows } = await client.query(PENDING_SOURCES, [after, prefix, batchSize]);
    if (rows.length === 0) return;
    for (const { id } of rows) {
      after = id;
      await client.query('BEGIN');
      try {
        const locked = await client.query('SELECT secret_ciphertext FROM sources WHERE id = $1 FOR UPDATE', [id]);
        if (locked.rows.length > 0 && !locked.rows[0].secret_ciphertext.startsWith(prefix)) {
          let ciphertext = null;
          try {
            ciphertext = secrets.encryptSecret(secrets.decryptSecret(locked.rows[0].secret_ciphertext, ring, id), ring.current, id);
          } catch (err) {
            counts.failed += 1;
            reportLeft(secrets, failures, 'source', id, err);
          }
          if (ciphertext) {
            await client.query('UPDATE sources SET secret_ciphertext = $2 WHERE id = $1', [id, ciphertext]);
            counts.sources += 1;
          }
        }
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw err;
      }
    }
  }
}

async function main() {
  const { batchSize } = options(process.argv.slice(2));
  // What @nestjs/config does for the apps: a .env file in the working directory, the environment first.
  if (fs.existsSync('.env')) process.loadEnvFile('.env');
  const { config, layers, secrets, secretSet } = loadModules();
  // As for the apps: the config file named by BELLHOP_CONFIG, under the environment. A key read from
  // the environment alone while the apps read it from the file would re-encrypt under the wrong key.
  try {
    layers.applySettings(layers.resolveSettings({ argv: [], program: 'secrets:reencrypt' }));
  } catch (err) {
    fail(`configuration error: ${err.message}`);
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
  const sourceCounts = { sources: 0, failed: 0 };
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
              reportLeft(secrets, failures, 'webhook', id, err);
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
    await reencryptSources(client, secrets, ring, prefix, batchSize, sourceCounts);
  } finally {
    await client.end().catch(() => undefined);
  }

  console.log(`secrets: re-encrypted ${counts.secrets} secret(s) of ${counts.webhooks} webhook(s) under key ${currentId}; ${counts.failed} webhook(s) could not be decrypted`);
  console.log(`secrets: re-encrypted the secrets of ${sourceCounts.sources} inbound source(s) under key ${currentId}; ${sourceCounts.failed} source(s) could not be decrypted`);
  if (failures.unknownKey > 0) {
    console.error('secrets: add the keys named above to SECRETS_KEY_PREVIOUS and run this again; until then, keep every key that is listed there now');
  }
  if (failures.damaged > 0) {
    console.error(`secrets: the ${failures.damaged} row(s) reported damaged above open under no key: a key in SECRETS_KEY_PREVIOUS does not help them; inspect and repair them by hand`);
  }
  if (counts.failed > 0 || sourceCounts.failed > 0) process.exit(1);
  if (previousIds.length > 0) {
    console.log('secrets: every stored secret is under SECRETS_KEY: once every API and worker process runs with this SECRETS_KEY, SECRETS_KEY_PREVIOUS may be emptied (then restart them)');
  }
}

main().then(
  () => process.exit(0),
  (err) => fail(err && err.message ? err.message : String(err)),
);
