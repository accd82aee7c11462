import { Batcher } from './batcher';

describe('Batcher', () => {
  it('gives callers that arrive together one flush, each its own result', async () => {
    const flushes: number[][] = [];
    const batcher = new Batcher<number, number>(async (items) => {
      flushes.push(items);
      return items.map((n) => n * 2);
    });
    const results = await Promise.all([1, 2, 3].map((n) => batcher.run(n)));
    expect(results).toEqual([2, 4, 6]);
    expect(flushes).toEqual([[1, 2, 3]]);
  });

  it('caps the batch size and the batches in flight', async () => {
    let inFlight = 0;
    let most = 0;
    const sizes: number[] = [];
    const batcher = new Batcher<number, number>(
      async (items) => {
        inFlight += 1;
        most = Math.max(most, inFlight);
        sizes.push(items.length);
        await new Promise((resolve) => setTimeout(resolve, 5));
        inFlight -= 1;
        return items;
      },
      { maxBatch: 10, maxConcurrent: 2 },
    );
    const results = await Promise.all(Array.from({ length: 45 }, (_, i) => batcher.run(i)));
    expect(results).toEqual(Array.from({ length: 45 }, (_, i) => i));
    expect(Math.max(...sizes)).toBeLessThanOrEqual(10);
    expect(most).toBeLessThanOrEqual(2);
  });

  it('rejects every caller of a failed batch and keeps serving later ones', async () => {
    let fail = true;
    const batcher = new Batcher<number, number>(async (items) => {
      if (fail) throw new Error('database down');
      return items;
    });
    await expect(Promise.all([batcher.run(1), batcher.run(2)])).rejects.toThrow('database down');
    fail = false;
    await expect(batcher.run(3)).resolves.toBe(3);
  });

  it('can flush the items of a failed batch one by one, so one bad item fails alone', async () => {
    const flushes: number[][] = [];
    const batcher = new Batcher<number, number>(
      async (items) => {
        flushes.push(items);
        if (items.includes(13)) throw new Error(`bad item in ${items.join(',')}`);
        return items.map((n) => n * 2);
      },
      { isolateFailures: true },
    );
    const outcomes = await Promise.allSettled([1, 13, 3].map((n) => batcher.run(n)));
    expect(outcomes).toEqual([
      { status: 'fulfilled', value: 2 },
      { status: 'rejected', reason: new Error('bad item in 13') },
      { status: 'fulfilled', value: 6 },
    ]);
    expect(flushes[0]).toEqual([1, 13, 3]);
  });
});
