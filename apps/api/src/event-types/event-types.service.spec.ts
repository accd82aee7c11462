import { AppError, SandboxFailure } from '@bellhop/domain';
import { inSandbox } from './event-types.service';

describe('inSandbox', () => {
  it('answers the sandbox being busy with 429 and Retry-After: 1', async () => {
    const err = await inSandbox(() => Promise.reject(new SandboxFailure('busy'))).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AppError);
    expect(err).toMatchObject({ status: 429, code: 'rate_limited', retryAfterSeconds: 1 });
  });

  it('leaves the sandbox’s other failures and the answers as they are', async () => {
    await expect(inSandbox(() => Promise.reject(new SandboxFailure('timeout')))).rejects.toBeInstanceOf(SandboxFailure);
    await expect(inSandbox(async () => 'checked')).resolves.toBe('checked');
  });
});
