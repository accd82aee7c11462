import { scrypt as scryptCb, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';
import { hash as argon2Hash, parseOptions, verify as argon2Verify } from '@node-rs/argon2';
import type { Algorithm } from '@node-rs/argon2';

const scrypt = promisify(scryptCb) as (password: string, salt: Buffer, keylen: number, options: object) => Promise<Buffer>;

/** The package declares its enum as a const enum without a runtime value: Argon2id is 2. */
const ARGON2ID = 2 as Algorithm;

/**
 * OWASP's first recommendation for password storage: Argon2id with 19 MiB, 2 passes, 1 lane
 * (~95 ms a hash on a current server core). Hashes made with other parameters are replaced at the
 * next successful login.
 */
export const ARGON2_PARAMS = { memoryCost: 19456, timeCost: 2, parallelism: 1 } as const;

/**
 * What a stored hash may ask for before it is verified at all: a corrupted or planted row must not
 * make the server allocate gigabytes or spin for minutes. Argon2 memory is in KiB.
 */
const ARGON2_BOUNDS = { memoryCost: 65536, timeCost: 10, parallelism: 4 } as const;
/** Hashes of the previous scheme (N=2^14, r=8, p=1) are only verified, never made. */
const SCRYPT_BOUNDS = { maxN: 2 ** 16, maxR: 16, maxP: 4, maxMemory: 32 * 1024 * 1024 } as const;
/** Longer than any hash this code made or verifies: the row is refused before it is parsed. */
const MAX_STORED_LENGTH = 256;

/** An Argon2id PHC string (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`, random 16-byte salt), stored as is. */
export function hashPassword(password: string): Promise<string> {
  return argon2Hash(password, { algorithm: ARGON2ID, ...ARGON2_PARAMS });
}

/**
 * Whether `password` matches `stored`: an Argon2id PHC string, or `scrypt$N$r$p$<salt>$<hash>` of
 * the previous scheme. A hash that cannot be used (unknown scheme, malformed, parameters out of
 * bounds) matches nothing.
 */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  if (stored.length > MAX_STORED_LENGTH) return false;
  if (stored.startsWith('$argon2id$')) {
    if (!argon2WithinBounds(stored)) return false;
    return argon2Verify(stored, password).catch(() => false);
  }
  if (stored.startsWith('scrypt$')) return verifyScrypt(password, stored);
  return false;
}

/** Whether a stored hash should be replaced by one at the current parameters (after it has matched). */
export function needsRehash(stored: string): boolean {
  if (!stored.startsWith('$argon2id$')) return true;
  try {
    const options = parseOptions(stored);
    return (
      options.memoryCost !== ARGON2_PARAMS.memoryCost ||
      options.timeCost !== ARGON2_PARAMS.timeCost ||
      options.parallelism !== ARGON2_PARAMS.parallelism ||
      options.version !== 1 // 0x13
    );
  } catch {
    return true;
  }
}

function argon2WithinBounds(stored: string): boolean {
  try {
    const { algorithm, memoryCost, timeCost, parallelism } = parseOptions(stored);
    return (
      algorithm === ARGON2ID &&
      memoryCost <= ARGON2_BOUNDS.memoryCost &&
      timeCost >= 1 &&
      timeCost <= ARGON2_BOUNDS.timeCost &&
      parallelism >= 1 &&
      parallelism <= ARGON2_BOUNDS.parallelism
    );
  } catch {
    return false;
  }
}

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

async function verifyScrypt(password: string, stored: string): Promise<boolean> {
  const parts = stored.split('$');
  if (parts.length !== 6 || !parts.slice(1, 4).every((part) => /^[1-9]\d{0,6}$/.test(part))) return false;
  const [, n, r, p, salt, hash] = parts;
  const [N, R, P] = [Number(n), Number(r), Number(p)];
  // N a power of two; scrypt's memory is 128·N·r bytes.
  if (N < 2 || N > SCRYPT_BOUNDS.maxN || (N & (N - 1)) !== 0 || R > SCRYPT_BOUNDS.maxR || P > SCRYPT_BOUNDS.maxP) return false;
  if (128 * N * R > SCRYPT_BOUNDS.maxMemory || !BASE64.test(salt) || !BASE64.test(hash)) return false;
  const expected = Buffer.from(hash, 'base64');
  if (expected.length < 16 || expected.length > 64) return false;
  // Node counts more than 128·N·r against maxmem: twice the bound leaves it room.
  const actual = await scrypt(password, Buffer.from(salt, 'base64'), expected.length, { N, r: R, p: P, maxmem: 2 * SCRYPT_BOUNDS.maxMemory });
  return timingSafeEqual(actual, expected);
}

/**
 * A hash of a random password nobody knows, at the current parameters: verified against when the
 * email is unknown, so that an unknown email costs the same time as a known one.
 */
export const DUMMY_HASH = '$argon2id$v=19$m=19456,t=2,p=1$CRqxALDe8nFykvFe3nDX2w$HHkml3KgPMw8Iku3U2dHnc3nKOKJx/mPfAsPF1vlAeI';

/**
 * The same under the previous scheme (scrypt N=2^14, r=8, p=1): verified against after a failed
 * check of any other hash while accounts of that scheme remain, so that a wrong password costs one
 * verification of each scheme whichever hash the account holds, or none.
 */
export const DUMMY_LEGACY_HASH = 'scrypt$16384$8$1$uh1o9RZ2wbn0sGUMJXXiYA==$IogWn5Q+XiJF3tEHZFOSfwi37dxgIWTkV51BwquCnjU=';

/** Whether a stored hash is of the previous scheme (scrypt). */
export function isLegacyHash(stored: string): boolean {
  return stored.startsWith('scrypt$');
}
