import { parseOptions } from '@node-rs/argon2';
import { ARGON2_PARAMS, DUMMY_HASH, hashPassword, needsRehash, verifyPassword } from './password';

/** 'correct horse battery' under the previous scheme (scrypt N=2^14, r=8, p=1). */
const LEGACY = 'scrypt$16384$8$1$Gr2jqSxm9vL03G+m7lTCRQ==$vvcYAJ1ISRuotZA+WmPwuxC/o6OUGZ31x59nYtPV8T4=';

describe('passwords', () => {
  it('hashes with Argon2id at the current parameters, a fresh salt each time', async () => {
    const a = await hashPassword('correct horse battery');
    const b = await hashPassword('correct horse battery');
    expect(a).toMatch(/^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
    expect(a).not.toBe(b);
    expect(await verifyPassword('correct horse battery', a)).toBe(true);
    expect(await verifyPassword('correct horse batterY', a)).toBe(false);
    expect(needsRehash(a)).toBe(false);
  });

  it('still verifies hashes of the previous scheme, and marks them for re-hashing', async () => {
    expect(await verifyPassword('correct horse battery', LEGACY)).toBe(true);
    expect(await verifyPassword('wrong horse battery', LEGACY)).toBe(false);
    expect(needsRehash(LEGACY)).toBe(true);
  });

  it('marks Argon2id hashes of other parameters for re-hashing', () => {
    const other = DUMMY_HASH.replace('m=19456,t=2', 'm=12288,t=3');
    expect(needsRehash(other)).toBe(true);
    expect(needsRehash('$argon2i$v=19$m=19456,t=2,p=1$CRqxALDe8nFykvFe3nDX2w$HHkml3KgPMw8Iku3U2dHnc3nKOKJx/mPfAsPF1vlAeI')).toBe(true);
  });

  it('keeps the dummy hash at the current parameters, so an unknown email costs what a known one does', () => {
    const options = parseOptions(DUMMY_HASH);
    expect(options).toMatchObject({ algorithm: 2, ...ARGON2_PARAMS });
    expect(needsRehash(DUMMY_HASH)).toBe(false);
  });

  it('refuses stored hashes with absurd parameters without computing them', async () => {
    const salt = 'CRqxALDe8nFykvFe3nDX2w';
    const hash = 'HHkml3KgPMw8Iku3U2dHnc3nKOKJx/mPfAsPF1vlAeI';
    const absurd = [
      `$argon2id$v=19$m=4194304,t=2,p=1$${salt}$${hash}`, // 4 GiB
      `$argon2id$v=19$m=19456,t=100000,p=1$${salt}$${hash}`,
      `$argon2id$v=19$m=19456,t=2,p=255$${salt}$${hash}`,
      `$argon2id$v=19$m=19456,t=2,p=1$${salt}$${'A'.repeat(400)}`,
      'scrypt$1073741824$8$1$Gr2jqSxm9vL03G+m7lTCRQ==$vvcYAJ1ISRuotZA+WmPwuxC/o6OUGZ31x59nYtPV8T4=', // 2^30
      'scrypt$16384$1024$1$Gr2jqSxm9vL03G+m7lTCRQ==$vvcYAJ1ISRuotZA+WmPwuxC/o6OUGZ31x59nYtPV8T4=',
      'scrypt$16384$8$1000$Gr2jqSxm9vL03G+m7lTCRQ==$vvcYAJ1ISRuotZA+WmPwuxC/o6OUGZ31x59nYtPV8T4=',
      'scrypt$16385$8$1$Gr2jqSxm9vL03G+m7lTCRQ==$vvcYAJ1ISRuotZA+WmPwuxC/o6OUGZ31x59nYtPV8T4=',
      'scrypt$1e9$8$1$Gr2jqSxm9vL03G+m7lTCRQ==$vvcYAJ1ISRuotZA+WmPwuxC/o6OUGZ31x59nYtPV8T4=',
    ];
    for (const stored of absurd) {
      const started = process.hrtime.bigint();
      expect(await verifyPassword('correct horse battery', stored)).toBe(false);
      // Refused on sight: computing any of them would take minutes, gigabytes, or fail outright.
      expect(Number(process.hrtime.bigint() - started) / 1e6).toBeLessThan(1000);
    }
  });

  it('matches nothing with a malformed or unknown hash', async () => {
    for (const stored of ['', 'plain', '$argon2id$junk', 'scrypt$16384$8$1$$', 'bcrypt$2b$10$abc', '$argon2d$v=19$m=19456,t=2,p=1$CRqxALDe8nFykvFe3nDX2w$HHkml3KgPMw8Iku3U2dHnc3nKOKJx/mPfAsPF1vlAeI']) {
      expect(await verifyPassword('correct horse battery', stored)).toBe(false);
    }
  });
});
