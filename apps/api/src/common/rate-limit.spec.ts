import type { Request } from 'express';
import { addressKey, requestKey } from './rate-limit';

describe('rate-limit keys', () => {
  it('keys IPv4 addresses alone, IPv4-mapped IPv6 as IPv4', () => {
    expect(addressKey('203.0.113.7')).toBe('ip:203.0.113.7');
    expect(addressKey('::ffff:203.0.113.7')).toBe('ip:203.0.113.7');
    expect(addressKey('::FFFF:cb00:7107')).toBe('ip:203.0.113.7');
    expect(addressKey('203.0.113.8')).not.toBe(addressKey('203.0.113.7'));
  });

  it('groups IPv6 addresses by their /64, whatever their spelling', () => {
    const key = addressKey('2001:db8:0:1::1');
    expect(key).toBe('ip6:2001:db8:0:1::/64');
    for (const same of ['2001:db8::1:0:0:0:9', '2001:0DB8:0000:0001:ffff:ffff:ffff:ffff', '2001:db8:0:1:1:2:3.4.5.6', 'fe80::1%eth0'.replace('fe80::', '2001:db8:0:1::')]) {
      expect(addressKey(same)).toBe(key);
    }
    expect(addressKey('2001:db8:0:2::1')).not.toBe(key);
    expect(addressKey('::1')).toBe('ip6:0:0:0:0::/64');
    expect(addressKey('::')).toBe('ip6:0:0:0:0::/64');
  });

  it('keys what is not an address together', () => {
    expect(addressKey(undefined)).toBe('ip:unknown');
    expect(addressKey('not an address')).toBe('ip:unknown');
  });

  it('keys a request by its resolved credential, else by its address', () => {
    const req = (user: unknown, ip = '198.51.100.1') => ({ user, ip, headers: {} }) as unknown as Request;
    expect(requestKey(req({ type: 'user', id: 'usr_1', sessionId: 'ses_1' }))).toBe('session:ses_1');
    expect(requestKey(req({ type: 'user', id: 'usr_1', sessionId: 'ses_2' }))).toBe('session:ses_2');
    expect(requestKey(req({ type: 'api_token', id: 'tok_1', sessionId: null }))).toBe('token:tok_1');
    expect(requestKey(req(undefined))).toBe('ip:198.51.100.1');
    expect(requestKey(req(undefined, '2001:db8:5:6:7::8'))).toBe('ip6:2001:db8:5:6::/64');
  });
});
