// Which webhook URLs a batch may name. A webhook must not become a way to reach the service's own network
// (loopback, private ranges, link-local and cloud metadata addresses), unless an operator allows it.
import ipaddr from 'ipaddr.js';
import { err, ok, type Result } from './result.ts';

const publicRange = 'unicast';
const ipv4CompatibleBlock = ipaddr.parseCIDR('::/96');
const blockedHostnames = [/^localhost$/i, /\.localhost$/i, /^metadata\.google\.internal$/i, /^metadata$/i];

export interface WebhookUrlPolicy {
  allowPrivate: boolean;
}

/** Returns the reason an address literal is not a public unicast address, or undefined when it is. */
export function privateAddressReason(address: string): string | undefined {
  if (!ipaddr.isValid(address)) return undefined;
  let parsed = ipaddr.parse(address);
  if (parsed.kind() === 'ipv6' && (parsed as ipaddr.IPv6).isIPv4MappedAddress()) {
    parsed = (parsed as ipaddr.IPv6).toIPv4Address();
  }
  const range = parsed.range();
  // ipaddr.js calls the deprecated IPv4-compatible block ::/96 (::127.0.0.1) unicast; it embeds an IPv4 address.
  if (range === publicRange && parsed.kind() === 'ipv6' && parsed.match(ipv4CompatibleBlock)) {
    return `${address} is an IPv4-compatible address`;
  }
  if (range === publicRange) return undefined;
  // ipaddr.js names its ranges in camelCase (linkLocal, uniqueLocal): a client reads words.
  const words = range.replace(/([a-z])([A-Z])/g, '$1 $2').toLowerCase();
  return `${address} is ${/^[aeiou]/.test(words) ? 'an' : 'a'} ${words} address`;
}

export function checkWebhookUrl(raw: string, policy: WebhookUrlPolicy): Result<URL, string> {
  if (/[\r\n\t\0 ]/.test(raw)) return err('must not contain whitespace or control characters');
  if (raw.length > 2048) return err('must be at most 2048 characters');
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return err('is not a valid absolute URL');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return err(`scheme ${url.protocol} is not http or https`);
  if (url.username || url.password) return err('must not carry credentials');
  if (policy.allowPrivate) return ok(url);
  // A trailing dot names the same host (`localhost.`), so it must not slip past the list of local names.
  const host = url.hostname.replace(/^\[|\]$/g, '').replace(/\.$/, '');
  if (blockedHostnames.some((pattern) => pattern.test(host))) return err(`host ${host} is a local name`);
  // WHATWG URL parsing already normalises decimal, hex and octal IPv4 spellings to dotted form.
  const reason = privateAddressReason(host);
  return reason ? err(`points to a private network: ${reason}`) : ok(url);
}
