import { keyValues, sparkline, table } from './format';

describe('table', () => {
  it('pads every column to its widest cell and leaves the last one unpadded', () => {
    expect(table(['ID', 'NAME'], [['wh_1', 'receiver'], ['wh_22', null]])).toBe(['ID     NAME', 'wh_1   receiver', 'wh_22  -'].join('\n'));
  });

  it('prints only the header for an empty list', () => {
    expect(table(['ID', 'NAME'], [])).toBe('ID  NAME');
  });
});

describe('keyValues', () => {
  it('aligns the values', () => {
    expect(keyValues([['id', 'wh_1'], ['last success', null]])).toBe('id:           wh_1\nlast success: -');
  });
});

describe('sparkline', () => {
  it('gives one bar per value, the largest the full block', () => {
    expect(sparkline([0, 1, 2, 4, 8])).toHaveLength(5);
    expect(sparkline([1, 2, 4, 8]).slice(-1)).toBe('█');
  });

  it('keeps zero at the lowest bar and lifts any non-zero value above it', () => {
    expect(sparkline([0, 1, 1000])).toBe('▁▂█');
  });

  it('draws a flat line for a quiet window', () => {
    expect(sparkline([0, 0, 0])).toBe('▁▁▁');
    expect(sparkline([])).toBe('');
  });
});
