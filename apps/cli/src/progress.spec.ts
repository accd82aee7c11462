import { Progress } from './progress';

/** A carriage return or an escape (a redrawn line, a cursor or colour code): never in output that is not a terminal. */
// eslint-disable-next-line no-control-regex -- these control characters are what the tests look for
const CONTROL = /[\r\x1b]/;

function sink(isTTY: boolean) {
  const writes: string[] = [];
  return { writes, stream: { isTTY, columns: 80, write: (text: string) => writes.push(text) } };
}

describe('Progress', () => {
  it('writes plain lines without a terminal: the first at once, then at most one a second, and always the last', () => {
    const { writes, stream } = sink(false);
    let now = 0;
    const progress = new Progress(stream, 'replay rpl_1', { now: () => now });
    progress.update(0, 300);
    for (let done = 1; done <= 300; done++) {
      now += 10; // 300 updates over 3 s
      progress.update(done, 300);
    }
    progress.finish('completed');
    expect(writes).toEqual(['replay rpl_1: 0/300 (0%)\n', 'replay rpl_1: 100/300 (33%)\n', 'replay rpl_1: 200/300 (66%)\n', 'replay rpl_1: 300/300 (100%)\n', 'replay rpl_1: 300/300 (100%) completed\n']);
    expect(writes.join('')).not.toMatch(CONTROL);
  });

  it('does not repeat the last line when nothing changed', () => {
    const { writes, stream } = sink(false);
    const progress = new Progress(stream, 'publishing', { now: () => 0 });
    progress.update(0, 2);
    progress.update(2, 2);
    progress.finish();
    expect(writes).toEqual(['publishing: 0/2 (0%)\n', 'publishing: 2/2 (100%)\n']);
  });

  it('redraws one line in place on a terminal and ends it at the finish', () => {
    const { writes, stream } = sink(true);
    let now = 0;
    const progress = new Progress(stream, 'publishing', { now: () => now });
    progress.update(0, 4);
    now += 100;
    progress.update(2, 4);
    now += 10; // within the redraw interval: drawn only by the finish
    progress.update(4, 4);
    progress.finish();
    expect(writes[0]).toBe(`\rpublishing [${'░'.repeat(24)}] 0/4 (0%)\x1b[K`);
    expect(writes[1]).toBe(`\rpublishing [${'█'.repeat(12)}${'░'.repeat(12)}] 2/4 (50%)\x1b[K`);
    expect(writes.slice(2)).toEqual([`\rpublishing [${'█'.repeat(24)}] 4/4 (100%)\x1b[K`, '\n']);
  });

  it('counts an empty job as done', () => {
    const { writes, stream } = sink(false);
    const progress = new Progress(stream, 'replay', { now: () => 0 });
    progress.update(0, 0);
    progress.finish();
    expect(writes).toEqual(['replay: 0/0 (100%)\n']);
  });
});
