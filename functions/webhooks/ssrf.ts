/**
 * SSRF guard for customer webhook URLs. A URL is checked twice: syntactically when a job is created (fast
 * feedback) and at delivery, where every address the hostname resolves to is checked and the connection is
 * pinned to a checked address (custom `lookup`), so DNS rebinding between check and connect cannot slip through.
 */
import { BlockList, isIP } from 'node:net';
import { lookup as dnsLookup } from 'node:dns';
import type { LookupAddress, LookupOptions } from 'node:dns';

export class SsrfError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SsrfError';
  }
}

const blocked = new BlockList();
// IPv4: "this" network, RFC 1918, CGNAT (also Alibaba's metadata 100.100.100.200), link-local (AWS/GCP/Azure
// metadata 169.254.169.254), IETF protocol assignments, TEST-NETs, benchmarking, multicast, reserved, broadcast.
for (const [net, prefix] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.0.2.0', 24],
  ['192.88.99.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['198.51.100.0', 24],
  ['203.0.113.0', 24],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const)
  blocked.addSubnet(net, prefix, 'ipv4');
// IPv6: unspecified, unique-local (AWS IMDS fd00:ec2::254), link-local, multicast, NAT64, documentation, 6to4, Teredo.
for (const [net, prefix] of [
  ['::', 128],
  ['fc00::', 7],
  ['fe80::', 10],
  ['ff00::', 8],
  ['64:ff9b::', 96],
  ['64:ff9b:1::', 48],
  ['2001:db8::', 32],
  ['2002::', 16],
  ['2001::', 32],
  ['100::', 64],
] as const)
  blocked.addSubnet(net, prefix, 'ipv6');
const loopback = new BlockList();
loopback.addSubnet('127.0.0.0', 8, 'ipv4');
loopback.addAddress('::1', 'ipv6');

/**
 * The 16 bytes of an IPv6 address (with or without a dotted-quad tail), or null. Written here because Node has
 * no IPv6 parser that exposes the bytes (BlockList only answers membership, and it does not look inside
 * embedded IPv4 forms).
 */
function ipv6Bytes(address: string): number[] | null {
  let a = address.toLowerCase().replace(/%.*$/, '');
  if (isIP(a) !== 6) return null;
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(a);
  if (dotted) {
    const q = dotted.slice(1).map(Number);
    a =
      a.slice(0, dotted.index) + `${((q[0] << 8) | q[1]).toString(16)}:${((q[2] << 8) | q[3]).toString(16)}`;
  }
  const [head, tail] = a.includes('::') ? a.split('::') : [a, undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  if (groups.length !== 8) return null;
  return groups.flatMap((g) => {
    const v = parseInt(g, 16);
    return [v >> 8, v & 255];
  });
}

/**
 * IPv6 forms that carry an IPv4 address inside, judged by that IPv4 (and refused in any case: a webhook has
 * no business using them, and some stacks route them to the IPv4 inside):
 * IPv4-compatible `::a.b.c.d` (::/96, deprecated), IPv4-mapped `::ffff:a.b.c.d`, IPv4-translated
 * `::ffff:0:a.b.c.d` (SIIT), NAT64 `64:ff9b::a.b.c.d` and `64:ff9b:1::/48` (local-use). 6to4 (2002::/16) and
 * Teredo (2001::/32) are refused whole by the block list.
 */
function embeddedIpv4(address: string): { ipv4: string; form: string } | null {
  const b = ipv6Bytes(address);
  if (!b) return null;
  const zero = (from: number, to: number) => b.slice(from, to).every((x) => x === 0);
  const v4 = () => b.slice(12, 16).join('.');
  if (zero(0, 10) && b[10] === 0xff && b[11] === 0xff) return { ipv4: v4(), form: 'IPv4-mapped' };
  if (zero(0, 8) && b[8] === 0xff && b[9] === 0xff && zero(10, 12))
    return { ipv4: v4(), form: 'IPv4-translated' };
  if (zero(0, 12) && !zero(12, 16) && !(zero(12, 15) && b[15] === 1))
    return { ipv4: v4(), form: 'IPv4-compatible' };
  if (b[0] === 0 && b[1] === 0x64 && b[2] === 0xff && b[3] === 0x9b) {
    if (zero(4, 12)) return { ipv4: v4(), form: 'NAT64' };
    if (b[4] === 0 && b[5] === 1) return { ipv4: v4(), form: 'NAT64 (local-use)' };
  }
  return null;
}

/** Why an address is refused, or null when it is a public unicast address. */
export function refusalReason(rawAddress: string, allowLoopback: boolean): string | null {
  const bare = rawAddress.replace(/^\[|\]$/g, '');
  const embedded = embeddedIpv4(bare);
  if (embedded) {
    const inner = refusalReason(embedded.ipv4, false);
    return `${rawAddress} is ${/^[AEIOU]/.test(embedded.form) ? 'an' : 'a'} ${embedded.form} IPv6 address${inner ? ` (${inner.replace(`${embedded.ipv4} is `, '')}: ${embedded.ipv4})` : ''}; use the IPv4 address or a host name`;
  }
  const family = isIP(bare) === 6 ? 'ipv6' : 'ipv4';
  const address = bare;
  if (loopback.check(address, family)) return allowLoopback ? null : `${rawAddress} is a loopback address`;
  if (address === '255.255.255.255') return `${rawAddress} is the broadcast address`;
  if (blocked.check(address, family)) {
    if (family === 'ipv4' && address.startsWith('169.254.'))
      return `${rawAddress} is link-local (cloud metadata range)`;
    return `${rawAddress} is a private, reserved or non-unicast address`;
  }
  return null;
}

/** Syntactic check at job creation. Returns a precise reason, or null when acceptable. */
export function checkWebhookUrl(raw: string, local: boolean): string | null {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return 'webhook is not an absolute URL';
  }
  if (url.protocol !== 'https:' && !(local && url.protocol === 'http:')) {
    return local ? 'webhook must use http or https' : 'webhook must use https';
  }
  if (url.username || url.password) return 'webhook must not contain credentials';
  const host = url.hostname.replace(/^\[|\]$/g, '');
  if (isIP(host)) return refusalReason(host, local);
  const lower = host.toLowerCase();
  if (lower === 'localhost' || lower.endsWith('.localhost'))
    return local ? null : 'webhook host is localhost';
  if (lower === 'metadata.google.internal' || lower.endsWith('.internal'))
    return 'webhook host is an internal name';
  return null;
}

/**
 * A `lookup` for http(s).request that resolves every address and refuses the connection if any of them is
 * not public (an attacker-controlled name may mix public and private records).
 */
export function guardedLookup(allowLoopback: boolean) {
  return (
    hostname: string,
    options: LookupOptions,
    callback: (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void,
  ): void => {
    dnsLookup(hostname, { all: true, family: options.family ?? 0 }, (err, addresses) => {
      if (err) return callback(err, '');
      if (addresses.length === 0) return callback(new SsrfError(`${hostname} resolved to no address`), '');
      for (const a of addresses) {
        const why = refusalReason(a.address, allowLoopback);
        if (why) return callback(new SsrfError(`refusing to deliver to ${hostname}: ${why}`), '');
      }
      if (options.all) callback(null, addresses);
      else callback(null, addresses[0].address, addresses[0].family);
    });
  };
}
