import { BlockList, isIP } from 'node:net';

/**
 * Address ranges that webhooks may never reach unless private destinations are allowed.
 *
 * Both lists follow IANA's Special-Purpose Address Registries (RFC 6890), in registry order:
 * https://www.iana.org/assignments/iana-ipv4-special-registry/
 * https://www.iana.org/assignments/iana-ipv6-special-registry/
 * Each comment names the entry, its RFC and the registry's "Globally Reachable" value. Every
 * entry the registries mark not globally reachable is covered; a few blocks are refused even
 * though the registry marks (part of) them reachable, and some non-registry blocks are refused
 * too (multicast, deprecated forms). Those are marked "beyond the registry".
 */
const blocked = new BlockList();
const V4_RANGES: Array<[string, number]> = [
  ['0.0.0.0', 8], // "This network", RFC 791 §3.2 (and 0.0.0.0/32, RFC 1122): not globally reachable
  ['10.0.0.0', 8], // Private-Use, RFC 1918: not globally reachable
  ['100.64.0.0', 10], // Shared Address Space (carrier-grade NAT), RFC 6598: not globally reachable
  ['127.0.0.0', 8], // Loopback, RFC 1122 §3.2.1.3: not globally reachable
  ['169.254.0.0', 16], // Link Local, RFC 3927 (cloud metadata lives here): not globally reachable
  ['172.16.0.0', 12], // Private-Use, RFC 1918: not globally reachable
  // IETF Protocol Assignments, RFC 6890 §2.1: not globally reachable. Also covers 192.0.0.0/29
  // (RFC 7335), 192.0.0.8/32 (RFC 7600), 192.0.0.170-171 (RFC 8880); beyond the registry it
  // also refuses the globally reachable anycast 192.0.0.9/32 (PCP, RFC 7723) and 192.0.0.10/32 (TURN, RFC 8155).
  ['192.0.0.0', 24],
  ['192.0.2.0', 24], // Documentation (TEST-NET-1), RFC 5737: not globally reachable
  // 192.31.196.0/24 AS112-v4 (RFC 7535) and 192.52.193.0/24 AMT (RFC 7450): globally reachable, allowed.
  ['192.88.99.0', 24], // Deprecated 6to4 Relay Anycast, RFC 7526 (was RFC 3068): no reachability given; refused as before
  ['192.168.0.0', 16], // Private-Use, RFC 1918: not globally reachable
  // 192.175.48.0/24 Direct Delegation AS112 Service (RFC 7534): globally reachable, allowed.
  ['198.18.0.0', 15], // Benchmarking, RFC 2544: not globally reachable
  ['198.51.100.0', 24], // Documentation (TEST-NET-2), RFC 5737: not globally reachable
  ['203.0.113.0', 24], // Documentation (TEST-NET-3), RFC 5737: not globally reachable
  ['224.0.0.0', 4], // Multicast, RFC 5771 (multicast registry, beyond the special-purpose registry)
  ['240.0.0.0', 4], // Reserved, RFC 1112 §4: not globally reachable; includes 255.255.255.255/32 Limited Broadcast (RFC 919, RFC 8190)
];
const V6_RANGES: Array<[string, number]> = [
  ['::1', 128], // Loopback Address, RFC 4291: not globally reachable
  ['::', 128], // Unspecified Address, RFC 4291: not globally reachable
  // ::ffff:0:0/96 IPv4-mapped Address, RFC 4291: not globally reachable. Not listed here: the
  // embedded IPv4 address is checked against V4_RANGES instead (see embeddedV4).
  ['::', 96], // IPv4-compatible, RFC 4291 §2.5.5.1 (deprecated; beyond the registry)
  ['::ffff:0:0:0', 96], // IPv4-translated (::ffff:0:a.b.c.d), RFC 2765 / RFC 6145 SIIT (beyond the registry)
  // 64:ff9b::/96 IPv4-IPv6 Translation, RFC 6052: globally reachable; its IPv4 part is checked (embeddedV4).
  ['64:ff9b:1::', 48], // Local-use IPv4/IPv6 Translation, RFC 8215: not globally reachable (whole /48)
  ['100::', 64], // Discard-Only Address Block, RFC 6666: not globally reachable
  ['100:0:0:1::', 64], // Dummy IPv6 Prefix, RFC 9780: not globally reachable
  // IETF Protocol Assignments, RFC 2928: not globally reachable. Covers TEREDO 2001::/32 (RFC 4380,
  // N/A), Benchmarking 2001:2::/48 (RFC 5180, not reachable) and deprecated ORCHID 2001:10::/28
  // (RFC 4843, N/A); beyond the registry it also refuses its globally reachable entries: 2001:1::1-3/128
  // anycast (RFC 7723, 8155, 9665), AMT 2001:3::/32 (RFC 7450), AS112-v6 2001:4:112::/48 (RFC 7535),
  // ORCHIDv2 2001:20::/28 (RFC 7343) and DETs 2001:30::/28 (RFC 9374).
  ['2001::', 23],
  ['2001:db8::', 32], // Documentation, RFC 3849: not globally reachable
  // 2002::/16 6to4, RFC 3056: N/A; its IPv4 part is checked (embeddedV4).
  // 2620:4f:8000::/48 Direct Delegation AS112 Service, RFC 7534: globally reachable, allowed.
  ['3fff::', 20], // Documentation, RFC 9637: not globally reachable
  ['5f00::', 16], // Segment Routing (SRv6) SIDs, RFC 9602: not globally reachable
  ['fc00::', 7], // Unique-Local, RFC 4193 / RFC 8190: not globally reachable
  ['fe80::', 10], // Link-Local Unicast, RFC 4291: not globally reachable
  ['fec0::', 10], // Site-local, RFC 3879 (deprecated; beyond the registry)
  ['ff00::', 8], // Multicast, RFC 4291 (beyond the registry)
];
for (const [net, prefix] of V4_RANGES) blocked.addSubnet(net, prefix, 'ipv4');
for (const [net, prefix] of V6_RANGES) blocked.addSubnet(net, prefix, 'ipv6');

/** Expands a valid IPv6 address (a zone, `::` and a dotted IPv4 tail allowed) into its eight 16-bit groups. */
export function ipv6Groups(address: string): number[] {
  let text = address.toLowerCase();
  const zone = text.indexOf('%');
  if (zone >= 0) text = text.slice(0, zone);
  // A trailing dotted quad (::ffff:1.2.3.4) becomes two groups.
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted) {
    const [a, b, c, d] = dotted[1].split('.').map(Number);
    text = text.slice(0, -dotted[1].length) + `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const headGroups = head ? head.split(':') : [];
  const tailGroups = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const missing = 8 - headGroups.length - tailGroups.length;
  const groups = [...headGroups, ...Array(tail !== undefined ? missing : 0).fill('0'), ...tailGroups];
  return groups.map((g) => parseInt(g, 16));
}

function v4FromGroups(hi: number, lo: number): string {
  return `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
}

/**
 * The IPv4 address an IPv6 address carries, for the forms that route to it: IPv4-mapped
 * (::ffff:a.b.c.d), well-known NAT64 (64:ff9b::/96) and 6to4 (2002:AABB:CCDD::/48). The local-use
 * NAT64 prefix 64:ff9b:1::/48 is refused whole (V6_RANGES): its IPv4 part need not be at the end.
 */
function embeddedV4(address: string): string | null {
  const g = ipv6Groups(address);
  if (g.length !== 8 || g.some((x) => Number.isNaN(x))) return null;
  const zeros = (from: number, to: number) => g.slice(from, to).every((x) => x === 0);
  if (zeros(0, 5) && g[5] === 0xffff) return v4FromGroups(g[6], g[7]);
  if (g[0] === 0x64 && g[1] === 0xff9b && zeros(2, 6)) return v4FromGroups(g[6], g[7]);
  if (g[0] === 0x2002) return v4FromGroups(g[1], g[2]);
  return null;
}

/** True for any address outside the public unicast internet (including IPv6 forms of such IPv4). */
export function isPrivateAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 4) return blocked.check(address, 'ipv4');
  if (family === 6) {
    const bare = address.replace(/%.*$/, '');
    if (blocked.check(bare, 'ipv6')) return true;
    const v4 = embeddedV4(bare);
    return v4 !== null && blocked.check(v4, 'ipv4');
  }
  return true; // not an address at all: refuse
}

export interface DestinationPolicy {
  allowHttp: boolean;
  allowPrivate: boolean;
}

export const MAX_URL_LENGTH = 2048;

/** The host of a parsed URL as an address literal, or null when it is a name. */
export function literalAddress(url: URL): string | null {
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  return isIP(host) ? host : null;
}

/**
 * Checks a webhook URL at create/update time. Returns a reason when it is refused, else null.
 * Host names are resolved and checked again at delivery time by the worker.
 */
export function checkWebhookUrl(raw: string, policy: DestinationPolicy): string | null {
  if (typeof raw !== 'string' || raw.length === 0) return 'must be an absolute URL';
  if (raw.length > MAX_URL_LENGTH) return `must be at most ${MAX_URL_LENGTH} characters`;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return 'must be an absolute URL';
  }
  if (url.protocol !== 'https:' && !(policy.allowHttp && url.protocol === 'http:')) {
    return policy.allowHttp ? 'must use http or https' : 'must use https';
  }
  if (url.username || url.password) return 'must not contain a user name or password';
  if (!url.hostname) return 'must have a host';
  const address = literalAddress(url);
  if (!policy.allowPrivate) {
    if (address !== null && isPrivateAddress(address)) return 'must not point to a private, loopback or reserved address';
    if (address === null && /(^|\.)localhost\.?$/i.test(url.hostname)) return 'must not point to localhost';
  }
  return null;
}
