import { Logger } from '@nestjs/common';
import type { InFlightLimiter, SlotGrant, SlotLimits } from './in-flight-limiter';

export interface CapacityOptions {
  /** Attempts to one webhook in flight at once, across all workers. */
  maxInFlightPerWebhook: number;
  /** Attempts of one organization in flight at once, across all workers. */
  maxInFlightPerOrganization: number;
  /** Range of the short, jittered delay of a job that found its webhook at the cap. */
  overCapDelayMs: readonly [number, number];
  /**
   * How long a job whose webhook or organization is at its cap waits in place for a slot before it
   * is sent back to the queue, unless slots of that cap are being freed in this process meanwhile.
   * So a slow endpoint's jobs give their worker slot back after this, while a fast endpoint's (or
   * a busy tenant's) wait their turn.
   */
  slotWaitMs: number;
  /** The longest a job waits in place for a slot, however fast slots turn over. */
  slotWaitMaxMs: number;
  /** How long a slot is held at most (the lease): a crashed holder's slot expires then. */
  slotTtlMs: number;
}

export interface SlotKey {
  deliveryId: string;
  webhookId: string;
  organizationId: string;
  /**
   * This job's hold on the slots, unique per job: two jobs for one delivery (a manual retry while
   * an attempt is in flight) then hold, and give back, a slot each.
   */
  member: string;
}

let slotSequence = 0;
/** A slot member unique across jobs and worker processes. */
function slotMember(deliveryId: string): string {
  slotSequence = (slotSequence + 1) % 0x100000000;
  return `${deliveryId}.${process.pid.toString(36)}.${slotSequence.toString(36)}`;
}

/** A held slot, or why none was given. */
export type Slot = { kind: 'held' | 'unlimited'; release: (sent?: boolean) => Promise<void> } | { kind: 'denied'; retryAt: Date };

/**
 * The capacity gate: two caps, so that no endpoint and no tenant can take every worker slot. Both
 * hold across all workers (in Redis, taken together in one round trip): a tenant gets no more
 * slots by there being more worker processes. Jobs at a cap wait in line in this process, woken
 * by releases here; the first in line also looks for releases by other workers.
 */
export class CapacityGate {
  private readonly logger = new Logger(CapacityGate.name);
  private readonly limits: SlotLimits;

  constructor(
    private readonly limiter: InFlightLimiter,
    private readonly options: CapacityOptions,
  ) {
    this.limits = { perWebhook: options.maxInFlightPerWebhook, perOrganization: options.maxInFlightPerOrganization, ttlMs: options.slotTtlMs };
  }

  /** A member unique across jobs and worker processes. */
  static member(deliveryId: string): string {
    return slotMember(deliveryId);
  }

  /** Takes a slot of both caps for one job, waiting in line as described at acquireSlot. */
  async enter(key: SlotKey): Promise<Slot> {
    const slot = await this.acquireSlot(key);
    if (slot === 'denied') return { kind: 'denied', retryAt: new Date(Date.now() + this.overCapDelay()) };
    return { kind: slot, release: this.releaser(key, slot) };
  }

  /**
   * Gives the slots back once, however many times it is called. `sent` says a request was made
   * with them: only then does a quick release count as the endpoint moving.
   */
  private releaser(key: SlotKey, slot: 'held' | 'unlimited'): (sent?: boolean) => Promise<void> {
    const acquiredAt = Date.now();
    let released: Promise<void> | undefined;
    return (sent = false) => (released ??= this.release(key, slot, sent && Date.now() - acquiredAt < this.options.slotWaitMs));
  }

  /**
   * Gives the slots back. `fast`: a request was sent and answered quickly with them; only that
   * counts as the turnover that keeps waiting jobs in place.
   */
  private async release(key: SlotKey, slot: 'held' | 'unlimited', fast: boolean): Promise<void> {
    if (slot === 'held') {
      await this.limiter.release(key).catch((err: Error) =>
        this.logger.warn({ msg: 'could not release the in-flight slots (they expire with the lease)', deliveryId: key.deliveryId, error: err.message }),
      );
    }
    this.wake(`org:${key.organizationId}`, fast);
    this.wake(`webhook:${key.webhookId}`, fast);
  }

  /**
   * Jobs waiting in this process for a slot of one cap (`webhook:<id>` or `org:<id>`), in order,
   * and how many slots of that cap were freed here since the first of them started waiting.
   */
  private readonly waiting = new Map<string, { wakers: Array<() => void>; freed: number; jobs: number }>();

  /** When a slot of each cap was last freed quickly in this process (pruned when it grows large). */
  private readonly fastReleaseAt = new Map<string, number>();

  /** A slot of this cap was freed here: let the longest waiter try, and count it if it was quick. */
  private wake(cap: string, fast: boolean): void {
    if (fast) {
      if (this.fastReleaseAt.size >= 10_000) this.fastReleaseAt.clear();
      this.fastReleaseAt.set(cap, Date.now());
    }
    const line = this.waiting.get(cap);
    if (!line) return;
    if (fast) line.freed += 1;
    line.wakers.shift()?.();
  }

  /** Resolves when a slot of the cap is freed in this process, or after timeoutMs. */
  private slotFreed(line: { wakers: Array<() => void> }, timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        const index = line.wakers.indexOf(wake);
        if (index >= 0) line.wakers.splice(index, 1);
        resolve();
      }, timeoutMs);
      line.wakers.push(wake);
    });
  }

  /**
   * Two caps, so that no endpoint and no tenant can take every worker slot: the webhook's and the
   * organization's, both across all workers (in Redis), both slots taken or neither. A job at
   * either cap waits in place for a slot, woken by releases in this process (the first in line
   * also polls for releases by other workers). It keeps waiting while slots of that cap
   * are being freed quickly here (a fast endpoint or a busy tenant: its turn comes within
   * milliseconds), up to slotWaitMaxMs; when none is for slotWaitMs (a slow endpoint), it gives
   * its worker slot back and goes back to the queue, so that other tenants' jobs behind it run.
   * A job at its tenant's cap waits only if that tenant's attempts are finishing quickly.
   */
  private async acquireSlot(key: SlotKey): Promise<'held' | 'denied' | 'unlimited'> {
    const started = Date.now();
    let deadline = started + this.options.slotWaitMs;
    let line: { wakers: Array<() => void>; freed: number; jobs: number } | undefined;
    let cap = '';
    let freedBefore = 0;
    let mayStay = false;
    try {
      for (;;) {
        let grant: SlotGrant;
        try {
          grant = await this.limiter.acquire(key, this.limits);
        } catch (err) {
          // Fairness is not worth a lost attempt: without the limiter, deliver anyway.
          this.logger.warn({ msg: 'in-flight limiter unavailable; attempting without the per-webhook and per-organization caps', deliveryId: key.deliveryId, error: (err as Error).message });
          // The script may have taken the slots although its answer was lost: give them back now
          // rather than at the end of the lease (the member is this job's alone).
          void this.limiter.release(key).catch(() => undefined);
          return 'unlimited';
        }
        if (grant === 'held') return 'held';
        const denied = grant === 'organization_full' ? `org:${key.organizationId}` : `webhook:${key.webhookId}`;
        // A tenant whose attempts are not finishing quickly here gives the worker slot back at
        // once, so that other tenants' jobs behind it run.
        if (grant === 'organization_full' && !line && !((this.fastReleaseAt.get(denied) ?? 0) > Date.now() - this.options.slotWaitMs)) return 'denied';
        if (denied !== cap) {
          if (line && --line.jobs === 0) this.waiting.delete(cap);
          cap = denied;
          line = this.waiting.get(cap);
          if (!line) this.waiting.set(cap, (line = { wakers: [], freed: 0, jobs: 0 }));
          // Only the first few in line may keep their place beyond slotWaitMs, so that one busy
          // endpoint or tenant never holds every worker slot: twice the webhook's cap, and half
          // the tenant's (a tenant's further jobs go back to the queue at once).
          const room = cap.startsWith('org:') ? Math.ceil(this.options.maxInFlightPerOrganization / 2) : 2 * this.options.maxInFlightPerWebhook;
          if (line.jobs >= room && cap.startsWith('org:')) {
            line = undefined; // never joined
            return 'denied';
          }
          mayStay = line.jobs < room;
          line.jobs += 1;
          freedBefore = line.freed;
        }
        const now = Date.now();
        if (mayStay && line!.freed > freedBefore) {
          // Slots of this cap are turning over here: the endpoint is moving, so keep the place.
          freedBefore = line!.freed;
          deadline = Math.min(now + this.options.slotWaitMs, started + this.options.slotWaitMaxMs);
        }
        if (now >= deadline) return 'denied';
        // Only the first in line also polls, for releases by other workers: a queue of waiters
        // polling Redis would cost more than the sends.
        const first = line!.wakers.length === 0;
        await this.slotFreed(line!, first ? Math.min(deadline - now, 20) : deadline - now);
      }
    } finally {
      if (line && --line.jobs === 0) this.waiting.delete(cap);
    }
  }

  private overCapDelay(): number {
    const [min, max] = this.options.overCapDelayMs;
    return Math.round(min + Math.random() * Math.max(0, max - min));
  }
}
