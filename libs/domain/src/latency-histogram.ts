/**
 * Latency histograms of the dashboard rollups. Bucket 0 holds attempts answered in under 1 ms;
 * bucket i (1 to 120) holds [1.1^(i-1), 1.1^i) ms, and bucket 120 everything slower. The same
 * formula is the SQL function bellhop_latency_bucket (see the dashboard migration): keep them equal.
 *
 * A percentile is read as the geometric middle of the bucket it falls in, so it is within about
 * 5% of the true value (and within 0.5 ms below 1 ms).
 */
export const LATENCY_BUCKETS = 121;
const RATIO = 1.1;

export function latencyBucket(ms: number): number {
  if (!(ms >= 1)) return 0;
  return Math.min(LATENCY_BUCKETS - 1, 1 + Math.floor(Math.log(ms) / Math.log(RATIO)));
}

/** The value a bucket stands for: the geometric middle of its bounds, in whole milliseconds. */
export function latencyOfBucket(bucket: number): number {
  if (bucket <= 0) return 0;
  return Math.round(RATIO ** (bucket - 0.5));
}

/** Adds `counts` into `into` (element-wise; `into` grows as needed). */
export function addCounts(into: number[], counts: readonly number[]): number[] {
  for (let i = 0; i < counts.length; i++) into[i] = (into[i] ?? 0) + (counts[i] ?? 0);
  return into;
}

/** Counts one observation in `bucket` (`into` grows as needed, with zeros, never holes). */
export function countBucket(into: number[], bucket: number): number[] {
  for (let i = into.length; i < bucket; i++) into[i] = 0;
  into[bucket] = (into[bucket] ?? 0) + 1;
  return into;
}

/** The p-th percentile (0 < p ≤ 100) of a histogram, or null when it counts nothing. */
export function percentile(counts: readonly number[], p: number): number | null {
  const total = counts.reduce((sum, n) => sum + (n ?? 0), 0);
  if (total === 0) return null;
  // The smallest value with at least p% of the observations at or below it (nearest rank).
  const rank = Math.max(1, Math.ceil((p / 100) * total));
  let seen = 0;
  for (let i = 0; i < counts.length; i++) {
    seen += counts[i] ?? 0;
    if (seen >= rank) return latencyOfBucket(i);
  }
  return latencyOfBucket(counts.length - 1);
}
