// The operator dashboard in a real browser: Debian's Chromium, driven by playwright-core, against the real server
// process on embedded defaults. Small segments processed one at a time make progress slow enough to watch.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { apiClient, type ApiClient, memory, ndjsonStream } from '../support/api-client.ts';
import { tempDir } from '../support/local-context.ts';
import { serverProcess, type ServerProcess } from '../support/server-process.ts';
import { webhookReceiver, type WebhookReceiver } from '../support/webhook-receiver.ts';
import { commonEnv, rejectMarker, testKeys } from './http.suite.ts';

const chromiumPath = process.env.BATCHMEM_CHROMIUM ?? '/usr/bin/chromium';
// Without the background-networking flags Chromium's own connections are refused in the sandboxed test machines.
const chromiumArgs = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
const artifacts = join(import.meta.dirname, '..', 'artifacts', 'dashboard');

const firstTotal = 20_000;
// Processing starts when the upload ends; at a few thousand items a second this one runs for many seconds.
const slowTotal = 60_000;
// Every 333rd item is rejected by the fault-injecting sink: 61 errors, three pages of 25 on the batch page.
const rejectEvery = 333;
const expectedErrors = Math.ceil((firstTotal - 7) / rejectEvery);
const withRejects = (i: number) => (i % rejectEvery === 7 ? { ...memory(i), content: `${rejectMarker} ${memory(i).content}` } : memory(i));

/** The term/description pairs of the <dl> in the region with this heading. */
async function stats(page: Page, region: string): Promise<Record<string, string>> {
  return page.getByRole('region', { name: region, exact: true }).locator('dl').evaluate((dl) => {
    const pairs: Record<string, string> = {};
    for (const dt of Array.from(dl.querySelectorAll('dt'))) pairs[dt.textContent ?? ''] = dt.nextElementSibling?.textContent ?? '';
    return pairs;
  });
}

const progressOf = (page: Page, batchId: string) => page.getByRole('progressbar', { name: `Progress of batch ${batchId}`, exact: true });
// Browser-side reactions get this long; a loaded CI machine can be slow.
const ui = { timeout: 15_000 };
const firstCell = (page: Page) => page.locator('#error-rows tr td:first-child');

describe('operator dashboard in Chromium', () => {
  const keys = testKeys();
  const key = keys[0]!.key;
  const webhookSecret = 'whsec_' + randomBytes(32).toString('base64');
  const dir = tempDir();
  let server: ServerProcess;
  let receiver: WebhookReceiver;
  let api: ApiClient;
  let browser: Browser;
  let page: Page;
  const requestedUrls: string[] = [];
  const browserErrors: string[] = [];
  const timings: Record<string, number> = {};
  const shot = (name: string) => page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });

  beforeAll(async () => {
    if (!existsSync(chromiumPath)) {
      throw new Error(
        `Chromium was not found at ${chromiumPath}. The dashboard test drives Debian's Chromium: ` +
          'install it with `apt-get install -y chromium` (or set BATCHMEM_CHROMIUM to a Chromium binary).',
      );
    }
    mkdirSync(artifacts, { recursive: true });
    receiver = await webhookReceiver(webhookSecret);
    server = await serverProcess({
      ...commonEnv(keys),
      BATCHMEM_DATA_DIR: dir.path,
      BATCHMEM_SEGMENT_MAX_ITEMS: '5',
      BATCHMEM_SEGMENT_CONCURRENCY: '1',
    });
    await server.start();
    api = apiClient(server.url, key);
    // playwright-core gives every launch a fresh, temporary --user-data-dir of its own.
    browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args: chromiumArgs });
    page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
    page.on('request', (request) => requestedUrls.push(request.url()));
    page.on('console', (message) => { if (message.type() === 'error') browserErrors.push(message.text()); });
    page.on('pageerror', (error) => browserErrors.push(error.message));
    // Records every value each progress bar takes, however briefly, so "it advanced" does not depend on polling.
    await page.addInitScript(() => {
      const seen: Record<string, number[]> = {};
      (window as unknown as { progressSeen: typeof seen }).progressSeen = seen;
      new MutationObserver((mutations) => {
        for (const mutation of mutations) {
          const bar = mutation.target as Element;
          if (bar.getAttribute('role') !== 'progressbar') continue;
          const label = bar.getAttribute('aria-label') ?? '';
          const value = Number(bar.getAttribute('aria-valuenow'));
          const values = (seen[label] ??= []);
          if (values.at(-1) !== value) values.push(value);
        }
      }).observe(document, { subtree: true, attributes: true, attributeFilter: ['aria-valuenow'] });
    });
  });

  beforeEach(({ task, onTestFailed }) => {
    onTestFailed(async () => {
      await page?.screenshot({ path: join(artifacts, `failed-${task.name.replace(/[^a-z0-9]+/gi, '-').slice(0, 60)}.png`), fullPage: true });
    });
  });

  afterAll(async () => {
    await browser?.close();
    await server?.stop();
    await receiver?.close();
    dir.remove();
    console.info(`[dashboard] timings (ms): ${JSON.stringify(timings)}`);
  });

  it(`follows a ${firstTotal.toLocaleString('en')}-memory batch live on /ui until its progress bar reads 100 %`, async () => {
    let startedAt = Date.now();
    const submitted = await api.submitNdjson(
      ndjsonStream(firstTotal, withRejects),
      `?batch_id=dash-first&webhook_url=${encodeURIComponent(receiver.url)}`,
      { 'webhook-secret': webhookSecret },
    );
    expect(submitted.status).toBe(202);
    timings.submitFirst = Date.now() - startedAt;

    startedAt = Date.now();
    const response = await page.goto(`${server.url}/ui`);
    const csp = response!.headers()['content-security-policy'] ?? '';
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toContain('unsafe-inline');
    const keyInput = page.getByLabel('API key', { exact: true });
    await keyInput.fill(key);
    await keyInput.press('Enter');
    await expect.poll(() => page.evaluate(() => sessionStorage.getItem('batchmem.apiKey')), ui).toBe(key);

    const bar = progressOf(page, 'dash-first');
    await bar.waitFor();
    const percent = async () => Number(await bar.getAttribute('aria-valuenow'));
    await expect.poll(percent, { timeout: 60_000, interval: 50 }).toBeGreaterThan(0);
    if ((await percent()) < 100) await shot('list-running');
    await expect.poll(percent, { timeout: 90_000, interval: 100 }).toBe(100);
    timings.watchFirst = Date.now() - startedAt;

    const seen = await page.evaluate(() => (window as unknown as { progressSeen: Record<string, number[]> }).progressSeen);
    const values = seen['Progress of batch dash-first'] ?? [];
    const between = values.filter((v) => v > 0 && v < 100);
    expect(between.length, `values seen: ${values.join(', ')}`).toBeGreaterThanOrEqual(2);
    expect(values).toEqual([...values].sort((a, b) => a - b));
    expect(values.at(-1)).toBe(100);
    const row = page.locator('tr[data-batch-id="dash-first"]');
    await expect.poll(() => row.locator('.status').textContent(), ui).toBe('completed');
    expect(await row.textContent()).toContain(`${firstTotal.toLocaleString('en')} / ${firstTotal.toLocaleString('en')}`);
    expect(await row.textContent()).toContain(`${expectedErrors} failed`);
    expect(await row.textContent()).toMatch(/\d+(\.\d+)?×/);
    expect(await bar.getAttribute('aria-valuetext')).toContain('20,000 of 20,000 items');
    await shot('list-completed');
  });

  it('opens the batch page with its counts, throughput, webhook delivery and item errors page by page', async () => {
    await page.getByRole('link', { name: 'dash-first', exact: true }).click();
    await expect.poll(() => new URL(page.url()).pathname, ui).toBe('/ui/batch/dash-first');
    await page.getByRole('heading', { name: 'Batch dash-first' }).waitFor();

    await expect.poll(() => stats(page, 'Items'), ui).toMatchObject({
      Total: '20,000', Processed: '20,000', Succeeded: (firstTotal - expectedErrors).toLocaleString('en'), Failed: String(expectedErrors),
    });
    expect((await stats(page, 'Payload')).Codec).toBe('zstd');
    // The list followed this batch live, so its throughput curve is there.
    await page.getByRole('img', { name: /^Throughput over the last/ }).waitFor();
    expect(await page.locator('#sparkline polyline').getAttribute('points')).toMatch(/^[\d.]+,[\d.]+( [\d.]+,[\d.]+)+$/);

    await receiver.waitFor('dash-first');
    await expect.poll(async () => (await stats(page, 'Webhook')).Delivery, { timeout: 30_000 }).toBe('Delivered');
    expect((await stats(page, 'Webhook')).URL).toBe(receiver.url);

    const pageLabel = page.locator('#errors-page');
    await expect.poll(() => pageLabel.textContent(), ui).toBe(`Page 1: errors 1–25 of ${expectedErrors}`);
    expect(await firstCell(page).allTextContents()).toHaveLength(25);
    expect(await firstCell(page).first().textContent()).toBe('7');
    await shot('batch-completed');

    const next = page.getByRole('button', { name: 'Next page' });
    const previous = page.getByRole('button', { name: 'Previous page' });
    await next.focus();
    await page.keyboard.press('Enter');
    await expect.poll(() => pageLabel.textContent(), ui).toBe(`Page 2: errors 26–50 of ${expectedErrors}`);
    expect(await firstCell(page).first().textContent()).toBe((7 + 25 * rejectEvery).toLocaleString('en'));
    await next.click();
    await expect.poll(() => pageLabel.textContent(), ui).toBe(`Page 3: errors 51–${expectedErrors} of ${expectedErrors}`);
    expect(await firstCell(page).allTextContents()).toHaveLength(expectedErrors - 50);
    expect(await next.isDisabled()).toBe(true);
    await previous.click();
    await expect.poll(() => pageLabel.textContent(), ui).toBe(`Page 2: errors 26–50 of ${expectedErrors}`);
  });

  it('cancels a running batch from its page once the dialog is confirmed', async () => {
    let startedAt = Date.now();
    // Submitted now, not earlier: its processing starts when the upload ends, so it is surely still running below.
    const response = await api.submitNdjson(ndjsonStream(slowTotal), '?batch_id=dash-slow');
    expect(response.status).toBe(202);
    timings.submitSlow = Date.now() - startedAt;

    startedAt = Date.now();
    await page.getByRole('link', { name: '← All batches' }).click();
    const link = page.getByRole('link', { name: 'dash-slow', exact: true });
    await link.focus();
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: 'Batch dash-slow' }).waitFor();
    const status = page.locator('#batch-status');
    const cancel = page.getByRole('button', { name: 'Cancel batch…' });
    await cancel.waitFor();
    // Let it run a little, so the page has progress to show.
    await expect.poll(async () => Number(await progressOf(page, 'dash-slow').getAttribute('aria-valuenow')), { timeout: 30_000, interval: 100 }).toBeGreaterThan(2);

    const dialog = page.getByRole('dialog', { name: 'Cancel this batch?' });
    await cancel.click();
    await dialog.waitFor();
    // Escape (like "Keep running") closes the dialog and leaves the batch alone.
    await page.keyboard.press('Escape');
    await dialog.waitFor({ state: 'hidden' });
    expect(await status.textContent()).toBe('processing');

    await cancel.click();
    await dialog.waitFor();
    await shot('cancel-dialog');
    await dialog.getByRole('button', { name: 'Yes, cancel batch' }).click();
    await expect.poll(() => status.textContent(), { timeout: 30_000 }).toBe('cancelled');
    expect(await cancel.isVisible()).toBe(false);
    timings.cancelSlow = Date.now() - startedAt;

    const cancelled = await api.get('dash-slow');
    expect(cancelled.status).toBe('cancelled');
    expect(cancelled.request_counts.processed).toBeGreaterThan(0);
    expect(cancelled.request_counts.processed).toBeLessThan(slowTotal);
    await shot('batch-cancelled');
  });

  it('shows an expired batch with its deadline, labels and not-processed count, and downloads its result files', async () => {
    // Segments of 5 items one at a time: this batch cannot finish in its 5 s window.
    const submitted = await api.submitNdjson(ndjsonStream(slowTotal, memory), '?batch_id=dash-expiring&completion_window=5s&metadata[job]=nightly-sync&metadata[source]=crm');
    expect(submitted.status).toBe(202);
    const done = await api.waitForFinal('dash-expiring', 60_000);
    expect(done.status).toBe('expired');
    expect(done.request_counts.expired).toBeGreaterThan(0);

    await page.getByRole('link', { name: '← All batches' }).click();
    const row = page.locator('tr[data-batch-id="dash-expiring"]');
    await expect.poll(() => row.textContent(), ui).toContain('job=nightly-sync · source=crm');
    expect(await row.textContent()).toContain('expired');
    // Only the matching batches when filtered by the new status.
    await page.getByRole('link', { name: 'dash-expiring' }).click();
    await expect.poll(() => page.locator('#batch-status').textContent(), ui).toBe('expired');
    const counts = await stats(page, 'Items');
    expect(counts['Not processed in time']).toBe(done.request_counts.expired.toLocaleString('en'));
    expect(await stats(page, 'Deadline and labels')).toMatchObject({ 'Completion window': '5s', Metadata: 'job=nightly-sync · source=crm' });
    await expect.poll(() => page.locator('#batch-failure').textContent(), ui).toContain('The batch expired: the completion window of 5s passed');
    await shot('batch-expired');

    const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download results' }).click()]);
    expect(download.suggestedFilename()).toBe('dash-expiring-results.ndjson');
    const saved = join(dir.path, 'downloaded-results.ndjson');
    await download.saveAs(saved);
    const lines = readFileSync(saved, 'utf8').trim().split('\n').map((line) => JSON.parse(line) as { index: number; outcome: string });
    expect(lines).toHaveLength(slowTotal);
    expect(lines.filter((line) => line.outcome === 'expired')).toHaveLength(done.request_counts.expired);
    await expect.poll(() => page.locator('#download-status').textContent(), ui).toContain('Saved dash-expiring-results.ndjson');
    const [errorsDownload] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download errors' }).click()]);
    expect(errorsDownload.suggestedFilename()).toBe('dash-expiring-errors.ndjson');
  });

  it("sends a final batch's webhook again from its page after the receiver answered 410, under the same webhook-id", async () => {
    receiver.setMode('gone');
    const submitted = await api.submitJson({ memories: [memory(1), memory(2)], batch_id: 'dash-redeliver', webhook_url: receiver.url, webhook_secret: webhookSecret });
    expect(submitted.status).toBe(202);
    await api.waitForFinal('dash-redeliver');
    await expect.poll(async () => ((await api.get('dash-redeliver')) as unknown as { webhook: { attempts: number } }).webhook.attempts, ui).toBe(1);
    receiver.setMode('ok');

    await page.setViewportSize({ width: 1280, height: 860 });
    await page.getByRole('link', { name: '← All batches' }).click();
    await page.getByRole('link', { name: 'dash-redeliver', exact: true }).click();
    await expect.poll(async () => (await stats(page, 'Webhook'))['Last error'], ui).toBe('receiver answered 410');
    const button = page.getByRole('button', { name: 'Send webhook again' });
    await button.click();
    await expect.poll(() => page.locator('#redeliver-status').textContent(), ui).toBe('Sending the webhook again.');
    await expect.poll(async () => (await stats(page, 'Webhook')).Delivery, { timeout: 30_000 }).toBe('Delivered');
    const sent = receiver.deliveries.filter((delivery) => delivery.payload.data.id === 'dash-redeliver');
    expect(sent.map((delivery) => delivery.answeredWith)).toEqual([410, 204]);
    expect(new Set(sent.map((delivery) => delivery.id)).size).toBe(1);
    expect(sent.every((delivery) => delivery.verified)).toBe(true);
    await shot('batch-redelivered');
  });

  it('fits a narrow screen, never puts the key in a URL, and raises no script or CSP error', async () => {
    await page.setViewportSize({ width: 375, height: 812 });
    await page.getByRole('link', { name: '← All batches' }).click();
    await progressOf(page, 'dash-slow').waitFor();
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(375);
    await shot('list-narrow');

    expect(requestedUrls.length).toBeGreaterThan(0);
    expect(requestedUrls.filter((url) => url.includes(key))).toEqual([]);
    expect(browserErrors).toEqual([]);
  });
});
