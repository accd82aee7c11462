import { envelopeOf } from './envelope';
import { checkTemplate, renderBody, renderTemplate, summaryOf } from './formats';

const envelope = envelopeOf({
  event: 'baseline.drift_detected',
  timestamp: new Date('2026-01-15T10:30:00.000Z'),
  project: { id: 'proj_1', name: 'my-mcp-server' },
  data: { fromVersion: 11, toVersion: 12, severity: 'breaking', changes: { toolsAdded: ['a'], toolsRemoved: [], toolsModified: ['b'], breakingCount: 1, warningCount: 2 }, note: null },
});

describe('webhook formats', () => {
  it('renders placeholders as values or as text, never splicing text into JSON', () => {
    const body = renderTemplate(
      { whole: '{{data.toVersion}}', text: 'v{{data.toVersion}} "{{event}}"', obj: 'x {{data.changes.toolsAdded}}', none: '{{data.missing}}', empty: '[{{data.missing}}]', nul: '{{data.note}}', key: { '{{event}}': 1 } },
      envelope,
    );
    expect(JSON.parse(body)).toEqual({ whole: 12, text: 'v12 "baseline.drift_detected"', obj: 'x ["a"]', none: null, empty: '[]', nul: null, key: { '{{event}}': 1 } });
  });

  it('keeps a key named __proto__ as an ordinary key', () => {
    const template = JSON.parse('{"__proto__": "{{event}}", "a": 1}') as object;
    expect(JSON.parse(renderTemplate(template, envelope))).toEqual(JSON.parse('{"__proto__": "baseline.drift_detected", "a": 1}'));
  });

  it('does not walk into inherited properties of the envelope', () => {
    expect(JSON.parse(renderTemplate({ a: '{{data.constructor}}', b: '{{event.length}}' }, envelope))).toEqual({ a: null, b: null });
  });

  it('bounds what placeholders insert into one body', () => {
    const big = envelopeOf({ event: 'x.y', timestamp: new Date(0), project: { id: 'p', name: 'n' }, data: { blob: 'b'.repeat(100 * 1024) } });
    const body = renderTemplate({ a: '{{data.blob}}', b: '{{data.blob}}', c: '{{data}}', d: 'x{{data.blob}}y', e: '{{event}}' }, big);
    expect(body.length).toBeLessThan(256 * 1024 + 1000);
    expect(JSON.parse(body)).toEqual({ a: 'b'.repeat(100 * 1024), b: 'b'.repeat(100 * 1024), c: null, d: 'xy', e: null });
  });

  it('keeps summaries on one line', () => {
    expect(summaryOf({ ...envelope, project: { id: 'p', name: 'two\nlines\r\n here' }, event: 'x.y' })).toBe('[two lines here] x.y');
  });

  it('keeps text from a payload from pinging a whole Discord channel', () => {
    expect(renderBody('discord', null, { ...envelope, project: { id: 'p', name: '@everyone' }, event: 'x.y' })).toBe(JSON.stringify({ content: '[@\u200beveryone] x.y' }));
  });

  it('checks templates: an object, placeholders under the envelope, bounded', () => {
    expect(checkTemplate({ a: '{{event}}' })).toBeNull();
    expect(checkTemplate('x')).toMatch(/JSON object/);
    expect(checkTemplate({ a: '{{secret}}' })).toMatch(/must start with/);
    expect(checkTemplate({ a: '{{data.x}}'.repeat(65) })).toMatch(/at most 64 placeholders/);
  });

  it('writes summaries; slack escapes its markup characters', () => {
    expect(summaryOf(envelope)).toBe('[my-mcp-server] Drift detected (breaking): v11 → v12, 1 added, 1 modified');
    expect(summaryOf({ ...envelope, event: 'deploy.finished' })).toBe('[my-mcp-server] deploy.finished');
    expect(renderBody('slack', null, { ...envelope, project: { id: 'p', name: '<!channel> & co' }, event: 'x.y' })).toBe('{"text":"[&lt;!channel&gt; &amp; co] x.y"}');
    expect(renderBody('bellwether', null, envelope)).toBeNull();
  });
});
