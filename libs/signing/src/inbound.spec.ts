import { SOURCE_SECRET_PATTERN, generateSourceSecret, verifyGitHubSignature, verifyGitLabToken } from './inbound';

describe('verifyGitHubSignature', () => {
  // GitHub's own example ("Validating webhook deliveries"): this secret, this payload, this header.
  const secret = "It's a Secret to Everybody";
  const body = Buffer.from('Hello, World!');
  const header = 'sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17';

  it("accepts GitHub's documented example, in either case of hex", () => {
    expect(verifyGitHubSignature(secret, body, header)).toBe(true);
    expect(verifyGitHubSignature(secret, body, header.toUpperCase().replace('SHA256=', 'sha256='))).toBe(true);
  });

  it('refuses another body, another secret, and headers of any other shape or length without throwing', () => {
    expect(verifyGitHubSignature(secret, Buffer.from('Hello, World?'), header)).toBe(false);
    expect(verifyGitHubSignature('another secret', body, header)).toBe(false);
    for (const bad of [undefined, '', 'sha256=', header.slice(0, -2), header + '00', header.replace('sha256=', 'sha1='), header.replace('sha256=', ''), `${header}, ${header}`, 'sha256=' + 'z'.repeat(64)]) {
      expect(verifyGitHubSignature(secret, body, bad)).toBe(false);
    }
  });
});

describe('verifyGitLabToken', () => {
  it('accepts the secret itself and nothing else, whatever the length', () => {
    const secret = generateSourceSecret();
    expect(verifyGitLabToken(secret, secret)).toBe(true);
    for (const bad of [undefined, '', secret.slice(1), secret + 'x', secret.toUpperCase(), 'x'.repeat(10_000)]) expect(verifyGitLabToken(secret, bad)).toBe(false);
  });
});

describe('source secrets', () => {
  it('generates 64 hex characters, a secret a caller could also have chosen', () => {
    const secret = generateSourceSecret();
    expect(secret).toMatch(/^[0-9a-f]{64}$/);
    expect(SOURCE_SECRET_PATTERN.test(secret)).toBe(true);
    expect(generateSourceSecret()).not.toBe(secret);
    for (const bad of ['short', 'has a space in the middle', 'x'.repeat(257), 'ünïcödé-secret-value']) expect(SOURCE_SECRET_PATTERN.test(bad)).toBe(false);
  });
});
