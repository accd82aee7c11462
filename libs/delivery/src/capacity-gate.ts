import { randomBytes } from 'node:crypto';
import { Logger } from '@nestjs/common';
import type { InFlightLimiter, SlotGrant, SlotLimits } from './in-flight-limiter';

export interface CapacityOptions {
  /** Attempts to one webhook in flight at once, across all workers. */
  maxInFlightPerWebhook: number;
  /** Attempts of one organization in flight at once, across all workers. */
  maxInFlightPerOrganization: number;
  /**
   * Range of the jittered delay of a job sent back to the queue at a cap, the first time. Each
   * further refusal of the same job doubles it, up to overCapDelayMaxMs.
   */
  overCapDelayMs: readonly [number, number];
  /**
   * The longest delay of a job sent back at a cap (at most a quarter of the lease, at least the
   * end of overCapDelayMs).
   */
  overCapDelayMaxMs: number;
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
  /** How often a line of waiting jobs looks for releases by other workers. Default 20 ms. */
  slotPollMs?: number;
}

/** The longest over-cap delay unless configured otherwise (see CapacityOptions.overCapDelayMaxMs). */
export const DEFAULT_OVER_CAP_DELAY_MAX_MS = 15_000;

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

/**
 * This process's part of a slot member. Not the pid: every container's worker is pid 1, and two
 * workers' jobs for one delivery (a manual retry beside the scheduled job) that drew the same
 * sequence number would hold one slot between them, and the first release would free both.
 */
const processTag = randomBytes(6).toString('base64url');
let slotSequence = 0;
/** A slot member unique across jobs and worker processes. */
function slotMember(deliveryId: string): string {
  slotSequence = (slotSequence + 1) % 0x100000000;
  return `${deliveryId}.${processTag}.${slotSequence.toString(36)}`;
}

/**
 * Attempts of each organization in flight in this process, taken only while the shared limiter
 * is unavailable: one tenant then still cannot take a whole worker.
 */
class LocalSlots {
  private readonly held = new Map<string, Set<string>>();

  tryAcquire(group: string, member: string, limit: number): boolean {
    let members = this.held.get(group);
    if (!members) this.held.set(group, (members = new Set()));
    if (!members.has(member) && members.size >= limit) return false;
    members.add(member);
    return true;
  }

  release(group: string, member: string): void {
    const members = this.held.get(group);
    if (!members) return;
    members.delete(member);
    if (members.size === 0) this.held.delete(group);
  }
}

/** Jobs of this process waiting for a slot of one cap. */
interface Line {
  /** Their wake-ups, longest waiting first. */
  wakers: Array<() => void>;
  /** Slots of the cap freed quickly here since the line formed. */
  freed: number;
  /** Jobs in the line, waking or not. */
  jobs: number;
  /** The next look for releases by other workers, while anyone waits. */
  poll?: NodeJS.Timeout;
}

/**
 * A held slot, or why none was given. 'unlimited': the shared limiter was unavailable, and only
 * this process's count of the organization's attempts was taken.
 */
export type Slot = { kind: 'held' | 'unlimited'; release: (sent?: boolean) => Promise<void> } | { kind: 'denied'; retryAt: Date };

/**
 * The capacity gate: two caps, so that no endpoint and no tenant can take every worker slot. Both
 * hold across all workers (in Redis, taken together in one round trip): a tenant gets no more
 * slots by there being more worker processes. Jobs at a cap wait in line in this process, woken
 * by releases here; the head of each line also looks for releases by other workers.
 */
export class CapacityGate {
  private readonly logger = new Logger(CapacityGate.name);
  private readonly limits: SlotLimits;
  private readonly fallbackSlots = new LocalSlots();
  private readonly overCapDelayMaxMs: number;
  private readonly slotPollMs: number;

  constructor(
    private readonly limiter: InFlightLimiter,
    private readonly options: CapacityOptions,
  ) {
    this.limits = { perWebhook: options.maxInFlightPerWebhook, perOrganization: options.maxInFlightPerOrganization, ttlMs: options.slotTtlMs };
    this.overCapDelayMaxMs = Math.max(options.overCapDelayMs[1], Math.min(options.overCapDelayMaxMs, options.slotTtlMs / 4));
    this.slotPollMs = options.slotPollMs ?? 20;
  }

  /** A member unique across jobs and worker processes. */
  static member(deliveryId: string): string {
    return slotMember(deliveryId);
  }

  /**
   * Takes a slot of both caps for one job, waiting in line as described at acquireSlot.
   * `refusals`: how many times this job was sent back before; each makes its next delay longer.
   */
  async enter(key: SlotKey, refusals = 0): Promise<Slot> {
    const slot = await this.acquireSlot(key);
    if (slot === 'denied') return { kind: 'denied', retryAt: new Date(Date.now() + this.overCapDelay(refusals)) };
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
    if (slot === 'unlimited') this.fallbackSlots.release(key.organizationId, key.member);
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
  private readonly waiting = new Map<string, Line>();

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

  /**
   * Resolves when a slot of the cap is freed in this process, when it is this job's turn to look
   * for releases by other workers, or after timeoutMs.
   */
  private slotFreed(line: Line, timeoutMs: number): Promise<void> {
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
      this.schedulePoll(line);
    });
  }

  /**
   * Every slotPollMs while jobs wait, the head of the line tries again, for releases by other
   * workers (which wake nobody here). One poller per line, whoever is at its head: a queue of
   * waiters each polling Redis would cost more than the sends, and a poller that took its slot,
   * or gave up, hands the role on.
   */
  private schedulePoll(line: Line): void {
    if (line.poll) return;
    line.poll = setTimeout(() => {
      line.poll = undefined;
      const head = line.wakers.shift();
      if (line.wakers.length > 0) this.schedulePoll(line);
      head?.();
    }, this.slotPollMs);
  }

  /**
   * Two caps, so that no endpoint and no tenant can take every worker slot: the webhook's and the
   * organization's, both across all workers (in Redis), both slots taken or neither. A job at
   * either cap waits in place for a slot, woken by releases in this process (the head of the line
   * also polls for releases by other workers). It keeps waiting while slots of that cap
   * are being freed quickly here (a fast endpoint or a busy tenant: its turn comes within
   * milliseconds), up to slotWaitMaxMs; when none is for slotWaitMs (a slow endpoint), it gives
   * its worker slot back and goes back to the queue, so that other tenants' jobs behind it run.
   * A job at its tenant's cap waits only if that tenant's attempts are finishing quickly.
   */
  private async acquireSlot(key: SlotKey): Promise<'held' | 'denied' | 'unlimited'> {
    const started = Date.now();
    let deadline = started + this.options.slotWaitMs;
    let line: Line | undefined;
    let cap = '';
    let freedBefore = 0;
    let mayStay = false;
    try {
      for (;;) {
        let grant: SlotGrant;
        try {
          grant = await this.limiter.acquire(key, this.limits);
        } catch (err) {
          // The script may have taken the slots although its answer was lost: give them back now
          // rather than at the end of the lease (the member is this job's alone).
          void this.limiter.release(key).catch(() => undefined);
          // Fairness is not worth a lost attempt: without the limiter, deliver anyway, but within
          // the organization's cap counted in this process, so that one tenant still cannot take
          // a whole worker. The webhook's cap is lifted until the limiter is back.
          if (this.fallbackSlots.tryAcquire(key.organizationId, key.member, this.options.maxInFlightPerOrganization)) {
            this.logger.warn({ msg: 'in-flight limiter unavailable; attempting without the per-webhook cap, the per-organization cap counted in this process only', deliveryId: key.deliveryId, error: (err as Error).message });
            return 'unlimited';
          }
          grant = 'organization_full';
        }
        if (grant === 'held') return 'held';
        const denied = grant === 'organization_full' ? `org:${key.organizationId}` : `webhook:${key.webhookId}`;
        // A tenant whose attempts are not finishing quickly here gives the worker slot back at
        // once (also a job that waited in its webhook's line first), so that other tenants' jobs
        // behind it run.
        if (grant === 'organization_full' && denied !== cap && !((this.fastReleaseAt.get(denied) ?? 0) > Date.now() - this.options.slotWaitMs)) return 'denied';
        if (denied !== cap) {
          // Woken in the organization's line, this job found its webhook full instead: the slot of
          // the organization it was woken for is still free, so the next in that line gets a try.
          if (line && this.leave(cap, line) > 0 && cap.startsWith('org:')) this.wake(cap, false);
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
        await this.slotFreed(line!, deadline - now);
      }
    } finally {
      if (line) this.leave(cap, line);
    }
  }

  /** Takes a job out of the count of a line: the last one out ends it. Returns how many are left. */
  private leave(cap: string, line: Line): number {
    if (--line.jobs > 0) return line.jobs;
    clearTimeout(line.poll);
    line.poll = undefined;
    this.waiting.delete(cap);
    return 0;
  }

  /**
   * The delay of a job sent back at a cap: overCapDelayMs the first time, twice as long at each
   * further refusal of the same job, up to overCapDelayMaxMs, jittered. A tenant's backlog at its
   * cap (or an endpoint's) then comes back to the shared queue a little at a time instead of all
   * of it every second, so other tenants' jobs do not wait behind its bounced jobs; a job that
   * gets its slot is done, and the next job of the delivery starts from the short delay again.
   */
  private overCapDelay(refusals: number): number {
    const [min, max] = this.options.overCapDelayMs;
    const growth = 2 ** Math.min(Math.max(0, refusals), 20);
    const high = Math.min(max * growth, this.overCapDelayMaxMs);
    const low = Math.min(min * growth, high / 2);
    return Math.round(low + Math.random() * Math.max(0, high - low));
  }
}
