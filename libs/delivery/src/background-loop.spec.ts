import { Logger } from '@nestjs/common';
import { BackgroundLoop, IdleBackoff } from './background-loop';

/** A loop whose passes the test controls: each pass waits for release() and records itself. */
class TestLoop extends BackgroundLoop<number> {
  protected readonly logger = new Logger('TestLoop');
  passes = 0;
  inFlight = 0;
  maxInFlight = 0;
  fail = false;
  private releases: Array<() => void> = [];

  constructor(public delayMs: number) {
    super('test pass', false);
    this.logger.error = jest.fn();
  }

  protected async pass(): Promise<number> {
    this.passes += 1;
    this.inFlight += 1;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    await new Promise<void>((resolve) => this.releases.push(resolve));
    this.inFlight -= 1;
    if (this.fail) throw new Error('boom');
    return this.passes;
  }

  protected delayAfter(): number {
    return this.delayMs;
  }

  release(): void {
    this.releases.shift()?.();
  }

  get errorsLogged(): number {
    return (this.logger.error as jest.Mock).mock.calls.length;
  }
}

const tick = (ms = 5) => new Promise((resolve) => setTimeout(resolve, ms));

describe('BackgroundLoop', () => {
  it('runs a pass at start, the next one after its delay, one at a time, and stops', async () => {
    const loop = new TestLoop(30);
    loop.start();
    await tick();
    expect(loop.passes).toBe(1);
    loop.release();
    await tick(10);
    expect(loop.passes).toBe(1); // waiting out the delay
    await tick(40);
    expect(loop.passes).toBe(2);
    const stopping = loop.stop();
    let stopped = false;
    void stopping.then(() => (stopped = true));
    await tick();
    expect(stopped).toBe(false); // waits for the pass in progress
    loop.release();
    await stopping;
    await tick(60);
    expect(loop.passes).toBe(2);
    expect(loop.maxInFlight).toBe(1);
  });

  it('runs the next pass at once when nudged, after the one in progress, and goes on after a failure', async () => {
    const loop = new TestLoop(10_000);
    loop.start();
    await tick();
    loop.nudge();
    loop.nudge();
    await tick();
    expect(loop.passes).toBe(1); // never two at once
    loop.fail = true;
    loop.release();
    await tick();
    expect(loop.passes).toBe(2); // the nudge, without waiting 10 s
    expect(loop.errorsLogged).toBe(1);
    loop.fail = false;
    loop.release();
    await tick();
    expect(loop.passes).toBe(2);
    loop.nudge();
    await tick();
    expect(loop.passes).toBe(3);
    loop.release();
    await loop.stop();
    expect(loop.maxInFlight).toBe(1);
  });

  it('does nothing when nudged before start or after stop', async () => {
    const loop = new TestLoop(10);
    loop.nudge();
    await tick(20);
    expect(loop.passes).toBe(0);
    loop.start();
    await tick();
    loop.release();
    await loop.stop();
    loop.nudge();
    await tick(20);
    expect(loop.passes).toBe(1);
  });

  it('cuts a longer wait short when woken, leaves a shorter one alone, and wakes after a pass in progress', async () => {
    const loop = new TestLoop(10_000);
    loop.start();
    await tick();
    loop.wake(20); // during the first pass: the next one within 20 ms instead of 10 s
    loop.release();
    await tick(40);
    expect(loop.passes).toBe(2);
    loop.release();
    await tick();
    loop.wake(10); // waiting 10 s: cut to 10 ms
    await tick(30);
    expect(loop.passes).toBe(3);
    loop.delayMs = 30;
    loop.release();
    await tick();
    loop.wake(1000); // waiting 30 ms: left as it is, neither later nor sooner
    await tick(10);
    expect(loop.passes).toBe(3);
    await tick(40);
    expect(loop.passes).toBe(4);
    loop.release();
    await loop.stop();
    loop.wake(0);
    await tick(20);
    expect(loop.passes).toBe(4);
    expect(loop.maxInFlight).toBe(1);
  });
});

describe('IdleBackoff', () => {
  it('doubles the wait after each empty pass up to its maximum, and starts over once work is found', () => {
    const idle = new IdleBackoff(2_000, 30_000);
    expect([idle.idle(), idle.idle(), idle.idle(), idle.idle(), idle.idle(), idle.idle()]).toEqual([2_000, 4_000, 8_000, 16_000, 30_000, 30_000]);
    idle.reset();
    expect(idle.idle()).toBe(2_000);
  });
});
