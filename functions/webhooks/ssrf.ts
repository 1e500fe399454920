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

/** IPv4-mapped/compatible IPv6 (::ffff:10.0.0.1) must be judged by the IPv4 inside. */
function unmap(address: string): { address: string; family: 'ipv4' | 'ipv6' } {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (m) return { address: m[1], family: 'ipv4' };
  const hex = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/i.exec(address);
  if (hex) {
    const hi = parseInt(hex[1], 16);
    const lo = parseInt(hex[2], 16);
    return { address: `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`, family: 'ipv4' };
  }
  return { address, family: isIP(address) === 6 ? 'ipv6' : 'ipv4' };
}

/** Why an address is refused, or null when it is a public unicast address. */
export function refusalReason(rawAddress: string, allowLoopback: boolean): string | null {
  const { address, family } = unmap(rawAddress.replace(/^\[|\]$/g, ''));
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
