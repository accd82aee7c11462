import { addCounts, countBucket, latencyBucket, latencyOfBucket, percentile, LATENCY_BUCKETS } from './latency-histogram';

describe('latency histogram', () => {
  it('puts each value in a bucket whose middle is within about 5% of it', () => {
    for (const ms of [1, 2, 3, 7, 10, 12, 50, 99, 100, 101, 250, 999, 1000, 4321, 30_000, 60_000]) {
      const middle = latencyOfBucket(latencyBucket(ms));
      expect(Math.abs(middle - ms) / ms).toBeLessThanOrEqual(0.06 + 1 / ms);
    }
    expect(latencyBucket(0)).toBe(0);
    expect(latencyBucket(0.4)).toBe(0);
    expect(latencyBucket(-5)).toBe(0);
    expect(latencyBucket(Number.NaN)).toBe(0);
    expect(latencyBucket(10 ** 9)).toBe(LATENCY_BUCKETS - 1);
  });

  it('reads percentiles by nearest rank', () => {
    const counts: number[] = [];
    for (let ms = 1; ms <= 100; ms++) addCounts(counts, Object.assign(new Array(latencyBucket(ms) + 1).fill(0), { [latencyBucket(ms)]: 1 }));
    expect(counts.reduce((a, b) => a + b, 0)).toBe(100);
    expect(Math.abs(percentile(counts, 50)! - 50) / 50).toBeLessThan(0.06);
    expect(Math.abs(percentile(counts, 95)! - 95) / 95).toBeLessThan(0.06);
    expect(Math.abs(percentile(counts, 99)! - 99) / 99).toBeLessThan(0.06);
    expect(percentile([], 50)).toBeNull();
    expect(percentile([0, 0], 95)).toBeNull();
  });

  it('counts single observations without leaving holes, and reads sparse arrays as zeros', () => {
    const counts: number[] = [];
    for (const ms of [20, 22, 3000]) countBucket(counts, latencyBucket(ms));
    expect(counts.every((n) => typeof n === 'number')).toBe(true);
    expect(Math.abs(percentile(counts, 50)! - 22) / 22).toBeLessThan(0.06);
    const sparse: number[] = [];
    sparse[latencyBucket(20)] = 2;
    sparse[latencyBucket(3000)] = 1;
    expect(Math.abs(percentile(sparse, 50)! - 20) / 20).toBeLessThan(0.06);
    expect(addCounts([], sparse).every((n) => typeof n === 'number')).toBe(true);
  });

  it('adds counts of different lengths', () => {
    expect(addCounts([1, 2], [1, 1, 1])).toEqual([2, 3, 1]);
    expect(addCounts([1, 2, 3], [1])).toEqual([2, 2, 3]);
  });
});
