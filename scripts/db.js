#!/usr/bin/env node
'use strict';
/*
 * Offline migrations for Bellhop.
 *
 *   node scripts/db.js migrate           apply pending migrations in prisma/migrations to DATABASE_URL
 *   node scripts/db.js diff [--from REV] print the SQL of a new migration (schema at REV, default HEAD,
 *                                        to the working prisma/schema.prisma)
 *   node scripts/db.js diff --write NAME also write it to prisma/migrations/<timestamp>_NAME/
 *
 * `prisma migrate deploy` downloads a native schema engine at start, which fails on machines without
 * internet. This wrapper drives Prisma's own WebAssembly schema engine (same logic, same
 * `_prisma_migrations` table), so both tools stay interchangeable. It relies on internal Prisma APIs:
 * the Prisma packages are pinned to one exact version in package.json for that reason.
 */
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { Client } = require('pg');

const root = path.resolve(__dirname, '..');
const schemaPath = path.join(root, 'prisma', 'schema.prisma');
const migrationsDir = path.join(root, 'prisma', 'migrations');
const filters = { externalTables: [], externalEnums: [] };

let configuredUrl;

/** DATABASE_URL from the environment (a .env file included), else (as for the apps) from the config file named by BELLHOP_CONFIG, else the default. */
function databaseUrl() {
  if (process.env.DATABASE_URL) return process.env.DATABASE_URL;
  if (configuredUrl === undefined) {
    configuredUrl = null;
    if (process.env.BELLHOP_CONFIG) {
      try {
        configuredUrl = configLayers().readConfigFile(path.resolve(process.env.BELLHOP_CONFIG)).values.DATABASE_URL || null;
      } catch (err) {
        fail(`configuration error: ${err.message}`);
      }
    }
  }
  return configuredUrl || 'postgresql://postgres@127.0.0.1:5432/bellhop';
}

/** The config file reader of @bellhop/config: built when there is a build, else from its TypeScript source. */
function configLayers() {
  const built = path.join(root, 'dist', 'libs', 'config', 'src', 'layers.js');
  if (fs.existsSync(built)) return require(built);
  try {
    require('ts-node').register({ transpileOnly: true, project: path.join(root, 'tsconfig.json') });
  } catch {
    fail('reading BELLHOP_CONFIG needs a build: run npm run build first');
  }
  return require(path.join(root, 'libs', 'config', 'src', 'layers.ts'));
}

function fail(message) {
  console.error(`db: ${message}`);
  process.exit(1);
}

/** The WebAssembly engine is loaded from @prisma/internals/build; the package ships it elsewhere. */
function ensureWasm() {
  const internalsDir = path.dirname(require.resolve('@prisma/internals/package.json'));
  const target = path.join(internalsDir, 'build', 'schema_engine_bg.wasm');
  if (fs.existsSync(target)) return;
  const source = path.join(path.dirname(require.resolve('prisma/package.json')), 'build', 'schema_engine_bg.wasm');
  try {
    fs.mkdirSync(path.dirname(target), { recursive: true });
    fs.copyFileSync(source, target);
  } catch (err) {
    // A service user (systemd's bellhop, Docker's node) may not write the install: it is done there at install time.
    fail(`cannot put Prisma's schema engine in place (${err.code ?? err.message}): as the owner of the install, run\n  cp ${source} ${target}`);
  }
}

/**
 * The pg adapter runs a migration script by splitting it at every ";", which breaks a function body
 * ($$ ... ; ... $$). The native engine of `prisma migrate deploy` sends the script whole; so does
 * this (one simple-protocol query: its statements also run as one transaction).
 */
function WholeScriptPgClass() {
  const { PrismaPg } = require('@prisma/adapter-pg');
  return class WholeScriptPg extends PrismaPg {
    async connect() {
      const adapter = await super.connect();
      adapter.executeScript = async (script) => {
        try {
          await adapter.underlyingDriver().query(script);
        } catch (err) {
          adapter.onError(err);
        }
      };
      return adapter;
    }
  };
}

async function engineFor(connectionString) {
  ensureWasm();
  const { SchemaEngineWasm } = require('@prisma/migrate');
  const { bindMigrationAwareSqlAdapterFactory } = require('@prisma/driver-adapter-utils');
  const WholeScriptPg = WholeScriptPgClass();
  const adapter = bindMigrationAwareSqlAdapterFactory(new WholeScriptPg({ connectionString }));
  const schemaText = fs.readFileSync(schemaPath, 'utf8');
  return SchemaEngineWasm.setup({ adapter, schemaContext: { schemaFiles: [[schemaPath, schemaText]] } });
}

/** Creates the target database when the server answers but the database does not exist yet. */
async function ensureDatabase(connectionString) {
  const url = new URL(connectionString);
  const name = decodeURIComponent(url.pathname.replace(/^\//, ''));
  if (!name) fail('DATABASE_URL names no database');
  const probe = new Client({ connectionString, connectionTimeoutMillis: 5000 });
  try {
    await probe.connect();
    await probe.end();
    return;
  } catch (err) {
    await probe.end().catch(() => undefined);
    if (err && err.code !== '3D000') {
      fail(`cannot reach Postgres at ${url.host} (${err.code || err.message}). Is it running? Check DATABASE_URL.`);
    }
  }
  url.pathname = '/postgres';
  const admin = new Client({ connectionString: url.toString(), connectionTimeoutMillis: 5000 });
  try {
    await admin.connect();
    await admin.query(`CREATE DATABASE "${name.replace(/"/g, '""')}"`);
    console.log(`db: created database ${name}`);
  } catch (err) {
    if (err.code !== '42P04') fail(`cannot create database ${name}: ${err.message}`);
  } finally {
    await admin.end().catch(() => undefined);
  }
}

function migrationDirectories() {
  if (!fs.existsSync(migrationsDir)) return [];
  return fs
    .readdirSync(migrationsDir, { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .map((d) => d.name)
    .sort()
    .map((name) => ({
      path: name,
      migrationFile: {
        path: 'migration.sql',
        content: { tag: 'ok', value: fs.readFileSync(path.join(migrationsDir, name, 'migration.sql'), 'utf8') },
      },
    }));
}

async function migrate() {
  const url = databaseUrl();
  await ensureDatabase(url);
  const engine = await engineFor(url);
  try {
    const lockPath = path.join(migrationsDir, 'migration_lock.toml');
    const result = await engine.applyMigrations({
      migrationsList: {
        baseDir: migrationsDir,
        lockfile: { path: 'migration_lock.toml', content: fs.existsSync(lockPath) ? fs.readFileSync(lockPath, 'utf8') : null },
        shadowDbInitScript: '',
        migrationDirectories: migrationDirectories(),
      },
      filters,
    });
    const applied = result.appliedMigrationNames || [];
    console.log(applied.length ? `db: applied ${applied.join(', ')}` : 'db: schema is up to date');
  } finally {
    await engine.stop?.().catch?.(() => undefined);
  }
}

async function diff(args) {
  const fromIndex = args.indexOf('--from');
  const rev = fromIndex >= 0 ? args[fromIndex + 1] : 'HEAD';
  const writeIndex = args.indexOf('--write');
  const name = writeIndex >= 0 ? args[writeIndex + 1] : null;
  let previous = null;
  if (migrationDirectories().length > 0) {
    try {
      previous = execFileSync('git', ['show', `${rev}:prisma/schema.prisma`], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    } catch {
      fail(`cannot read prisma/schema.prisma at ${rev}; pass --from REV`);
    }
  }
  // The diff is computed from the two schema texts alone; the engine still wants a connection,
  // so give it the server's maintenance database, which always exists.
  const adminUrl = new URL(databaseUrl());
  adminUrl.pathname = '/postgres';
  const engine = await engineFor(adminUrl.toString());
  const schemaText = fs.readFileSync(schemaPath, 'utf8');
  const from = previous === null ? { tag: 'empty' } : { tag: 'schemaDatamodel', files: [{ path: schemaPath, content: previous }] };
  let sql = '';
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = (chunk) => ((sql += chunk), true);
  try {
    await engine.migrateDiff({
      from,
      to: { tag: 'schemaDatamodel', files: [{ path: schemaPath, content: schemaText }] },
      script: true,
      shadowDatabaseUrl: null,
      exitCode: null,
      filters,
    });
  } finally {
    process.stdout.write = write;
    await engine.stop?.().catch?.(() => undefined);
  }
  if (!sql.trim() || /^-- This is an empty migration/.test(sql.trim())) {
    console.error('db: no schema change');
    return;
  }
  if (name) {
    const stamp = new Date().toISOString().replace(/[-:T]/g, '').slice(0, 14);
    const dir = path.join(migrationsDir, `${stamp}_${name}`);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'migration.sql'), sql);
    const lock = path.join(migrationsDir, 'migration_lock.toml');
    if (!fs.existsSync(lock)) fs.writeFileSync(lock, '# Please do not edit this file manually\n# It should be added in your version-control system (e.g., Git)\nprovider = "postgresql"\n');
    console.error(`db: wrote ${path.relative(root, dir)}/migration.sql`);
  }
  process.stdout.write(sql);
}

// What @nestjs/config does for the apps: a .env file in the working directory, the environment first,
// so that the migrations go to the database the apps will use.
if (fs.existsSync('.env')) process.loadEnvFile('.env');

const [command, ...args] = process.argv.slice(2);
const commands = { migrate, diff };
if (!commands[command]) fail('usage: db.js migrate | diff [--from REV] [--write NAME]');
commands[command](args).then(
  () => process.exit(0),
  (err) => fail(err && err.message ? err.message : String(err)),
);
