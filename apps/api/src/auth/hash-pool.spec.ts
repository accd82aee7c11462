import { HashPool, HashPoolFull } from './hash-pool';

/** A job that runs until the test lets it finish. */
function gate<T = string>() {
  let finish!: (value: T) => void;
  let fail!: (err: Error) => void;
  const done = new Promise<T>((resolve, reject) => {
    finish = resolve;
    fail = reject;
  });
  return { job: () => done, finish, fail };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('HashPool', () => {
  it('runs at most `concurrency` jobs at once, the others in order of arrival', async () => {
    const pool = new HashPool({ concurrency: 2, maxWaiting: 10 });
    const gates = [gate(), gate(), gate(), gate()];
    const started: number[] = [];
    const results = gates.map((g, i) =>
      pool.run(() => {
        started.push(i);
        return g.job();
      }),
    );
    await tick();
    expect(started).toEqual([0, 1]);
    expect(pool.waiting).toBe(2);
    gates[1].finish('b');
    await tick();
    expect(started).toEqual([0, 1, 2]);
    gates[0].finish('a');
    gates[2].finish('c');
    await tick();
    expect(started).toEqual([0, 1, 2, 3]);
    gates[3].finish('d');
    expect(await Promise.all(results)).toEqual(['a', 'b', 'c', 'd']);
    expect(pool.waiting).toBe(0);
  });

  it('refuses a job at once, without running it, when the waiting line is full', async () => {
    const pool = new HashPool({ concurrency: 1, maxWaiting: 2 });
    const g = gate();
    const held = [pool.run(g.job), pool.run(g.job), pool.run(g.job)];
    const refused = jest.fn(g.job);
    const err = await pool.run(refused).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HashPoolFull);
    expect(err).toMatchObject({ status: 429, code: 'rate_limited', retryAfterSeconds: 1 });
    expect(refused).not.toHaveBeenCalled();
    g.finish('done');
    expect(await Promise.all(held)).toEqual(['done', 'done', 'done']);
    // Once the line has room again, jobs are taken.
    expect(await pool.run(async () => 'later')).toBe('later');
  });

  it('passes a job’s error to its caller and frees its slot', async () => {
    const pool = new HashPool({ concurrency: 1, maxWaiting: 1 });
    const failing = gate();
    const first = pool.run(failing.job);
    const second = pool.run(async () => 'second');
    failing.fail(new Error('hash failed'));
    await expect(first).rejects.toThrow('hash failed');
    expect(await second).toBe('second');
    // A job that throws before returning a promise frees its slot too.
    await expect(
      pool.run(() => {
        throw new Error('at once');
      }),
    ).rejects.toThrow('at once');
    const after = await Promise.all([pool.run(async () => 1), pool.run(async () => 2)]);
    expect(after).toEqual([1, 2]);
  });
});
