// The pure webhook address check. Only here may a test name a non-loopback private address: nothing connects.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { checkWebhookUrl, privateAddressReason } from '../../src/domain/webhook-address.ts';

const strict = { allowPrivate: false };
const rejected = (url: string) => !checkWebhookUrl(url, strict).ok;

describe('checkWebhookUrl with private webhooks disallowed', () => {
  it.each([
    ['IPv4 loopback', 'http://127.0.0.1:8080/hook'],
    ['another IPv4 loopback address', 'https://127.8.9.10/'],
    ['the name localhost', 'http://localhost/hook'],
    ['localhost in capitals', 'http://LOCALHOST/hook'],
    ['localhost with a trailing dot', 'http://localhost./hook'],
    ['a subdomain of localhost', 'http://api.localhost/hook'],
    ['a subdomain of localhost with a trailing dot', 'http://api.localhost./hook'],
    ['the unspecified address', 'http://0.0.0.0/'],
    ['the shorthand 0', 'http://0/'],
  ])('rejects %s (%s)', (_name, url) => {
    expect(rejected(url)).toBe(true);
  });

  it.each([
    ['10/8', 'http://10.0.0.1/'],
    ['10/8, upper end', 'http://10.255.255.254/'],
    ['172.16/12', 'http://172.16.5.4/'],
    ['172.16/12, upper end', 'http://172.31.255.1/'],
    ['192.168/16', 'http://192.168.1.10/hook'],
    ['192.168/16 with a trailing dot', 'http://192.168.1.10./hook'],
    ['carrier-grade NAT 100.64/10', 'http://100.64.0.1/'],
  ])('rejects RFC 1918 and shared space: %s (%s)', (_name, url) => {
    expect(rejected(url)).toBe(true);
  });

  it.each([
    ['IPv4 link-local', 'http://169.254.10.20/'],
    ['IPv6 link-local', 'http://[fe80::1]/'],
    ['IPv6 unique local', 'http://[fd12:3456::1]/'],
  ])('rejects link-local and unique-local: %s (%s)', (_name, url) => {
    expect(rejected(url)).toBe(true);
  });

  it.each([
    ['AWS, GCP and Azure metadata address', 'http://169.254.169.254/latest/meta-data/'],
    ['AWS IPv6 metadata address', 'http://[fd00:ec2::254]/latest/meta-data/'],
    ['Alibaba metadata address', 'http://100.100.100.200/latest/meta-data/'],
    ['GCP metadata name', 'http://metadata.google.internal/computeMetadata/v1/'],
    ['GCP metadata name with a trailing dot', 'http://metadata.google.internal./computeMetadata/v1/'],
    ['the bare name metadata', 'http://metadata/'],
  ])('rejects cloud metadata endpoints: %s (%s)', (_name, url) => {
    expect(rejected(url)).toBe(true);
  });

  it.each([
    ['IPv6 loopback', 'http://[::1]/'],
    ['IPv6 loopback written long', 'http://[0:0:0:0:0:0:0:1]/'],
    ['IPv6 unspecified', 'http://[::]/'],
    ['IPv4-mapped loopback', 'http://[::ffff:127.0.0.1]/'],
    ['IPv4-mapped loopback in hex', 'http://[::ffff:7f00:1]/'],
    ['IPv4-mapped RFC 1918', 'http://[::ffff:10.0.0.1]/'],
    ['IPv4-mapped metadata', 'http://[::ffff:169.254.169.254]/'],
    ['IPv4-compatible loopback', 'http://[::127.0.0.1]/'],
    ['IPv4-compatible RFC 1918', 'http://[::10.0.0.1]/'],
    ['NAT64 of an RFC 1918 address', 'http://[64:ff9b::10.0.0.1]/'],
    ['6to4 of an RFC 1918 address', 'http://[2002:a00:1::]/'],
    ['IPv6 multicast', 'http://[ff02::1]/'],
  ])('rejects IPv6 forms: %s (%s)', (_name, url) => {
    expect(rejected(url)).toBe(true);
  });

  it.each([
    ['decimal', 'http://2130706433/'],
    ['hex', 'http://0x7f000001/'],
    ['hex per octet', 'http://0x7f.0x0.0x0.0x1/'],
    ['octal', 'http://0177.0.0.1/'],
    ['short form', 'http://127.1/'],
    ['percent-encoded', 'http://%31%32%37.0.0.1/'],
    ['decimal RFC 1918', 'http://167772161/'],
    ['hex metadata', 'http://0xa9fea9fe/'],
  ])('rejects IPv4 spelled as %s (%s)', (_name, url) => {
    expect(rejected(url)).toBe(true);
  });

  it.each([
    ['multicast', 'http://224.0.0.1/'],
    ['broadcast', 'http://255.255.255.255/'],
    ['benchmarking 198.18/15', 'http://198.18.0.1/'],
    ['documentation 192.0.2/24', 'http://192.0.2.1/'],
  ])('rejects other non-public IPv4: %s (%s)', (_name, url) => {
    expect(rejected(url)).toBe(true);
  });

  it.each([
    ['file', 'file:///etc/passwd'],
    ['ftp', 'ftp://example.com/hook'],
    ['gopher', 'gopher://example.com:70/_x'],
    ['javascript', 'javascript:alert(1)'],
    ['data', 'data:text/plain,hello'],
    ['ws', 'ws://example.com/hook'],
  ])('rejects the %s scheme', (_name, url) => {
    const result = checkWebhookUrl(url, strict);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.error).toMatch(/scheme/);
  });

  it.each([
    ['CRLF header injection', 'https://example.com/hook\r\nX-Injected: 1'],
    ['an LF alone', 'https://example.com/hook\nX-Injected: 1'],
    ['a NUL byte', 'https://example.com/\0hook'],
    ['a space', 'https://example.com/ho ok'],
    ['a tab', 'https://example.com/\thook'],
  ])('rejects %s', (_name, url) => {
    const result = checkWebhookUrl(url, strict);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.error).toMatch(/whitespace or control/);
  });

  it.each([
    ['credentials', 'https://user:pass@example.com/hook'],
    ['a relative URL', '/hook'],
    ['no host', 'http://'],
    ['an overlong URL', `https://example.com/${'a'.repeat(2100)}`],
  ])('rejects %s', (_name, url) => {
    expect(rejected(url)).toBe(true);
  });

  it.each([
    'https://example.com/hooks/batchmem',
    'http://example.com:8080/hook?x=1',
    'https://8.8.8.8/hook',
    'https://1.1.1.1:8443/',
    'https://[2606:4700:4700::1111]/hook',
    'https://[2001:4860:4860::8888]/',
    'https://hooks.example.org./trailing-dot',
    'https://localhost.example.com/a-public-name-that-starts-with-localhost',
  ])('allows the public target %s', (url) => {
    const result = checkWebhookUrl(url, strict);
    expect(result.ok).toBe(true);
  });
});

describe('checkWebhookUrl with private webhooks allowed', () => {
  it('allows loopback and private targets, for a receiver on the same machine', () => {
    for (const url of ['http://127.0.0.1:9000/hook', 'http://localhost/hook', 'http://10.0.0.1/', 'http://[::1]/']) {
      expect(checkWebhookUrl(url, { allowPrivate: true }).ok).toBe(true);
    }
  });

  it('still rejects non-http schemes, injected headers and credentials', () => {
    for (const url of ['file:///etc/passwd', 'http://127.0.0.1/\r\nX: 1', 'http://u:p@127.0.0.1/']) {
      expect(checkWebhookUrl(url, { allowPrivate: true }).ok).toBe(false);
    }
  });
});

describe('privateAddressReason', () => {
  it('names the range of a private address and says nothing of a public one', () => {
    expect(privateAddressReason('10.1.2.3')).toMatch(/private/);
    expect(privateAddressReason('127.0.0.1')).toMatch(/loopback/);
    // In words, with the right article (not "linkLocal", "a unspecified").
    expect(privateAddressReason('169.254.169.254')).toBe('169.254.169.254 is a link local address');
    expect(privateAddressReason('0.0.0.0')).toBe('0.0.0.0 is an unspecified address');
    expect(privateAddressReason('::ffff:192.168.0.1')).toMatch(/private/);
    expect(privateAddressReason('93.184.216.34')).toBeUndefined();
    expect(privateAddressReason('2606:4700:4700::1111')).toBeUndefined();
  });

  it('leaves names to the caller', () => {
    expect(privateAddressReason('example.com')).toBeUndefined();
  });

  it('rejects every address in 10/8, 172.16/12, 192.168/16, 127/8 and 169.254/16, in every spelling the URL parser accepts', () => {
    const blocks: [number, number, number][] = [
      [10, 0, 8],
      [172, 16, 12],
      [192, 168, 16],
      [127, 0, 8],
      [169, 254, 16],
    ];
    const address = fc
      .tuple(fc.constantFrom(...blocks), fc.integer({ min: 0, max: 0xffffffff }))
      .map(([[first, second, prefix], random]) => {
        const base = ((first << 24) | (second << 16)) >>> 0;
        const hostMask = prefix === 32 ? 0 : 0xffffffff >>> prefix;
        return (base | (random & hostMask)) >>> 0;
      });
    const spelling = fc.constantFrom(
      (n: number) => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.'),
      (n: number) => String(n),
      (n: number) => '0x' + n.toString(16),
      (n: number) => `[::ffff:${[n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.')}]`,
    );
    fc.assert(
      fc.property(address, spelling, (n, spell) => rejected(`http://${spell(n)}/hook`)),
      { numRuns: 500 },
    );
  });
});
