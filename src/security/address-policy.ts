/**
 * Which network addresses the gateway may open connections to for upstream calls (model
 * servers, workers, remote model files). Checked on every connection, after DNS resolution,
 * by the undici connector of every UpstreamClient (`guardedConnector`), and statically on
 * endpoints at registration (`checkEndpointUrl`).
 *
 * Always refused: link-local (169.254.0.0/16, fe80::/10), cloud metadata addresses and names,
 * unspecified, broadcast and multicast. `strict` mode accepts only `allowHosts` (names, `*.suffix`)
 * and `allowCidrs`; `development` mode accepts every other address (loopback, private, public).
 */
import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from 'node:dns';
import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';
import { buildConnector } from 'undici';
import { McpError } from '../errors.ts';

export type SecurityMode = 'development' | 'strict';

/** A DNS lookup with the signature of `dns.lookup` (what `net.connect({ lookup })` calls). */
export type LookupFunction = (
  hostname: string,
  options: LookupOptions,
  callback: (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void,
) => void;

export interface AddressPolicyOptions {
  mode?: SecurityMode;
  /** Host names accepted in strict mode: exact (`models.internal`) or a suffix (`*.models.internal`). */
  allowHosts?: readonly string[];
  /** Address ranges accepted in strict mode (`10.1.0.0/16`, `fd00:1::/64`, a single address). */
  allowCidrs?: readonly string[];
  /** The resolver (default `dns.lookup`); tests inject one to play a DNS answer that changes. */
  lookup?: LookupFunction;
}

/** Why an address is refused (logged; the client only learns "not allowed by policy"). */
export type Refusal = 'link-local' | 'metadata' | 'unspecified' | 'broadcast' | 'multicast' | 'not-allow-listed';

const METADATA_ADDRESSES = new Set(['169.254.169.254', '169.254.170.2', 'fd00:ec2::254', '100.100.100.200']);
const METADATA_NAMES = new Set(['metadata.google.internal', 'metadata.goog', 'metadata', 'instance-data', 'instance-data.ec2.internal']);
const ALWAYS_REFUSED_RANGES: Record<string, Refusal> = {
  linkLocal: 'link-local',
  unspecified: 'unspecified',
  broadcast: 'broadcast',
  multicast: 'multicast',
};

/** The error of a refused connection or endpoint: stable, and says no more than "not allowed by policy". */
export function forbiddenAddressError(): McpError {
  return new McpError('MCP_UPSTREAM_FORBIDDEN', 'the upstream address is not allowed by the gateway address policy', {
    retryable: true,
    mayHaveExecuted: false,
  });
}

function normalizeHost(host: string): string {
  let h = host.trim().toLowerCase();
  if (h.startsWith('[') && h.endsWith(']')) h = h.slice(1, -1);
  if (h.endsWith('.')) h = h.slice(0, -1);
  return h;
}

/** The address as IPv4 when it is an IPv4-mapped (or NAT64-embedded) IPv6 one. */
function canonical(addr: ipaddr.IPv4 | ipaddr.IPv6): ipaddr.IPv4 | ipaddr.IPv6 {
  if (addr.kind() === 'ipv6') {
    const v6 = addr as ipaddr.IPv6;
    if (v6.isIPv4MappedAddress()) return v6.toIPv4Address();
    const r = v6.range();
    if (r === 'rfc6052' || r === 'rfc6145') {
      const b = v6.toByteArray();
      return new ipaddr.IPv4(b.slice(12, 16));
    }
  }
  return addr;
}

function parseCidr(text: string): [ipaddr.IPv4 | ipaddr.IPv6, number] {
  if (text.includes('/')) {
    const [addr, bits] = ipaddr.parseCIDR(text);
    return [canonical(addr), addr.kind() === 'ipv6' && canonical(addr).kind() === 'ipv4' ? bits - 96 : bits];
  }
  const addr = canonical(ipaddr.parse(text));
  return [addr, addr.kind() === 'ipv4' ? 32 : 128];
}

/** Throws MCP_CONFIG_INVALID naming the entry when a CIDR of the config does not parse. */
export function validateCidrs(cidrs: readonly string[], path: string): void {
  cidrs.forEach((c, i) => {
    try {
      parseCidr(c);
    } catch {
      throw new McpError('MCP_CONFIG_INVALID', `${path}.${i}: "${c}" is not an IP address or CIDR range`, { details: { paths: [`${path}.${i}`] } });
    }
  });
}

export class AddressPolicy {
  readonly mode: SecurityMode;
  private readonly hosts: ReadonlySet<string>;
  private readonly suffixes: readonly string[];
  private readonly cidrs: ReadonlyArray<[ipaddr.IPv4 | ipaddr.IPv6, number]>;
  private readonly resolve: LookupFunction;

  constructor(options: AddressPolicyOptions = {}) {
    this.mode = options.mode ?? 'development';
    const hosts = (options.allowHosts ?? []).map(normalizeHost);
    this.hosts = new Set(hosts.filter((h) => !h.startsWith('*.')));
    this.suffixes = hosts.filter((h) => h.startsWith('*.')).map((h) => h.slice(1));
    this.cidrs = (options.allowCidrs ?? []).map(parseCidr);
    this.resolve = options.lookup ?? (dnsLookup as unknown as LookupFunction);
  }

  private hostListed(host: string): boolean {
    return this.hosts.has(host) || this.suffixes.some((s) => host.endsWith(s));
  }

  private inCidrs(addr: ipaddr.IPv4 | ipaddr.IPv6): boolean {
    return this.cidrs.some(([range, bits]) => range.kind() === addr.kind() && addr.match(range, bits));
  }

  /** Why a host name is refused before any resolution (metadata names; strict mode without a listing), or undefined. */
  checkName(hostname: string): Refusal | undefined {
    const host = normalizeHost(hostname);
    if (METADATA_NAMES.has(host)) return 'metadata';
    if (isIP(host)) return this.checkAddress(host, false);
    if (this.mode === 'strict' && !this.hostListed(host) && this.cidrs.length === 0) return 'not-allow-listed';
    return undefined;
  }

  /**
   * Why an address is refused, or undefined when it is allowed. `listedHost`: the connection is to
   * a host name on `allowHosts` (strict mode then accepts any address that is not always refused).
   */
  checkAddress(address: string, listedHost: boolean): Refusal | undefined {
    let addr: ipaddr.IPv4 | ipaddr.IPv6;
    try {
      addr = canonical(ipaddr.parse(normalizeHost(address)));
    } catch {
      return 'not-allow-listed';
    }
    const text = addr.toNormalizedString();
    if (METADATA_ADDRESSES.has(text) || METADATA_ADDRESSES.has(addr.toString())) return 'metadata';
    const always = ALWAYS_REFUSED_RANGES[addr.range()];
    if (always) return always;
    if (addr.kind() === 'ipv4' && addr.toString().startsWith('0.')) return 'unspecified';
    if (this.mode === 'development' || listedHost) return undefined;
    if (this.hostListed(addr.toString()) || this.inCidrs(addr)) return undefined;
    return 'not-allow-listed';
  }

  /** A `dns.lookup`-compatible resolver that fails with MCP_UPSTREAM_FORBIDDEN when any resolved address is refused. */
  readonly lookup: LookupFunction = (hostname, options, callback) => {
    const host = normalizeHost(hostname);
    const listed = this.hostListed(host);
    this.resolve(hostname, options, (err, address, family) => {
      if (err) return callback(err, address, family);
      const all = Array.isArray(address) ? address.map((a) => a.address) : [address];
      const refused = all.map((a) => this.checkAddress(a, listed)).find((r) => r !== undefined);
      if (refused) return callback(refusedConnection(hostname, refused), Array.isArray(address) ? [] : '', family);
      callback(null, address, family);
    });
  };

  /** Throws MCP_UPSTREAM_FORBIDDEN when the host (name or literal address) is refused before connecting. */
  assertHost(hostname: string): void {
    const refused = this.checkName(hostname);
    if (refused) throw refusedConnection(hostname, refused);
  }
}

/** The error a refused connection fails with; the host and reason are kept off the message (logs see `cause`). */
function refusedConnection(host: string, reason: Refusal): McpError {
  const e = forbiddenAddressError();
  Object.defineProperty(e, 'policy', { value: { host, reason }, enumerable: false });
  return e;
}

/** The host and reason of a policy refusal, for logs; undefined for other errors. */
export function refusalOf(err: unknown): { host: string; reason: Refusal } | undefined {
  return (err as { policy?: { host: string; reason: Refusal } } | null)?.policy;
}

/**
 * An undici connector that applies the policy: literal addresses and names are checked before
 * connecting, resolved addresses by the policy's lookup. Every pooled connection goes through it.
 */
export function guardedConnector(policy: AddressPolicy, options: buildConnector.BuildOptions = {}): buildConnector.connector {
  const base = buildConnector({ ...options, lookup: policy.lookup } as buildConnector.BuildOptions);
  return (opts, callback) => {
    try {
      policy.assertHost(opts.hostname);
    } catch (err) {
      queueMicrotask(() => callback(err as Error, null));
      return;
    }
    base(opts, callback);
  };
}

/** What an endpoint given at registration may be. */
export type EndpointSource = 'config' | 'api';

/**
 * Checks an instance endpoint at registration: `http`/`https` URLs whose host the policy does not
 * refuse outright (the address is checked again on every connection); `file:` URLs and bare paths
 * only from the configuration file. Throws MCP_VALIDATION_FAILED naming `path`.
 */
export function checkEndpoint(policy: AddressPolicy, endpoint: string, source: EndpointSource, path: string): void {
  const fail = (why: string): never => {
    throw new McpError('MCP_VALIDATION_FAILED', `${path}: ${why}`, { details: { path } });
  };
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(endpoint)?.[1]?.toLowerCase();
  const isPath = scheme === undefined || /^[a-z]:[\\/]/i.test(endpoint);
  if (isPath || scheme === 'file') {
    if (source !== 'config') fail('file paths and file: URLs are accepted only from the configuration file; give an http(s) URL');
    return;
  }
  if (scheme !== 'http' && scheme !== 'https') fail(`scheme "${scheme}:" is not allowed; use http or https`);
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    return fail('not a valid URL');
  }
  if (url.username || url.password) fail('credentials in the URL are not accepted; put them in the instance options as secret references');
  if (policy.checkName(url.hostname)) fail('the host is not allowed by the gateway address policy');
}
