// BATCHMEM_SINK_URL: a URL the HTTP sink cannot speak to stops the process at start, naming the variable, instead of
// leaving every batch processing while each request fails.
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/app/config.ts';

const sink = (url: string) => ({ BATCHMEM_SINK: 'http', BATCHMEM_SINK_FORMAT: 'papr', BATCHMEM_SINK_URL: url });

describe('BATCHMEM_SINK_URL', () => {
  it('takes http and https URLs', () => {
    expect(loadConfig(sink('http://127.0.0.1:9000/ingest')).BATCHMEM_SINK_URL).toBe('http://127.0.0.1:9000/ingest');
    expect(loadConfig(sink('https://memories.internal')).BATCHMEM_SINK_URL).toBe('https://memories.internal');
  });

  it.each(['ftp://127.0.0.1/x', 'file:///tmp/x', 'not-a-url'])('refuses %s, naming the variable', (url) => {
    expect(() => loadConfig(sink(url))).toThrow(ConfigError);
    expect(() => loadConfig(sink(url))).toThrow(/BATCHMEM_SINK_URL: use an http:\/\/ or https:\/\/ URL/);
  });
});
