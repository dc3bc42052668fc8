// batchmem dashboard: lists the tenant's batches and follows running ones live over the /events stream.
// It talks only to the /v1 API, with the key kept in sessionStorage and sent in the Authorization header, never in
// a URL. EventSource cannot send that header, so the stream is read with fetch() and parsed here. Every value
// shown goes in through textContent (the page's CSP requires Trusted Types, so an HTML sink would throw).

const keyStorage = 'batchmem.apiKey';
// The lifecycle's status sets, read from the API's own description (the Batch schema's status enum in
// /openapi.json) by loadLifecycle() before the first view: the page keeps no copy of the status names.
let finalStatuses = new Set();
let cancellable = new Set();
let completedStatus = '';
/** Order of progress: unfinished statuses in lifecycle order, then every final status on one rank. */
let statusRank = {};
// A browser opens at most six HTTP/1.1 connections to one host; leave room for the API calls themselves.
const maxLiveStreams = 4;
const listPageSize = 50;
const listPollMs = 5000;
const errorsPageSize = 25;
const maxSamples = 5000;
const sparkBuckets = 40;
// Progress events arrive every few hundred milliseconds; narrower buckets would draw the polling, not the work.
const minBucketMs = 500;
const webhookPollMs = 3000;
const webhookPollLimit = 40;

const $ = (id) => document.getElementById(id);
const integer = new Intl.NumberFormat();
const decimal = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });
const relative = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });
const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });

// ---- small DOM helpers ---------------------------------------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== undefined && value !== null && value !== false) element.setAttribute(name, String(value));
  }
  element.append(...children.filter((child) => child !== undefined && child !== null));
  return element;
}

function svg(tag, attrs = {}, ...children) {
  const element = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [name, value] of Object.entries(attrs)) element.setAttribute(name, String(value));
  element.append(...children);
  return element;
}

function show(view) {
  for (const id of ['view-key', 'view-list', 'view-batch']) $(id).hidden = id !== view;
}

function announce(message) {
  const announcer = $('announcer');
  announcer.textContent = '';
  // A fresh text node after a tick makes screen readers repeat an identical message.
  setTimeout(() => (announcer.textContent = message), 50);
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}

// ---- formatting ----------------------------------------------------------------------------------------------

function percentOf(batch) {
  const { total, processed } = batch.request_counts;
  if (total > 0) return Math.floor((processed * 100) / total);
  return batch.status === completedStatus ? 100 : 0;
}

function bytes(count) {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let value = count;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) { value /= 1000; unit += 1; }
  return `${unit === 0 ? integer.format(value) : decimal.format(value)} ${units[unit]}`;
}

function age(iso) {
  if (!iso) return '—';
  const seconds = Math.round((new Date(iso).getTime() - Date.now()) / 1000);
  const abs = Math.abs(seconds);
  if (abs < 60) return relative.format(seconds, 'second');
  if (abs < 3600) return relative.format(Math.round(seconds / 60), 'minute');
  if (abs < 86400) return relative.format(Math.round(seconds / 3600), 'hour');
  return relative.format(Math.round(seconds / 86400), 'day');
}

function duration(ms) {
  if (!Number.isFinite(ms) || ms < 0) return '—';
  const seconds = ms / 1000;
  if (seconds < 60) return `${decimal.format(seconds)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

function timeElement(iso) {
  if (!iso) return document.createTextNode('—');
  return h('time', { datetime: iso, title: dateTime.format(new Date(iso)), 'data-age': iso }, age(iso));
}

function statusBadge(element, status) {
  element.className = `status status-${status}`;
  element.textContent = status;
}

function ratio(batch) {
  return batch.payload.compression_ratio > 0 ? `${decimal.format(batch.payload.compression_ratio)}×` : '—';
}

/** Keeps whichever of two views of a batch is further along: a poll may answer after a newer stream event. */
function newer(previous, next) {
  if (!previous) return true;
  // The progress version grows with every status change and item outcome (it is the stream's event id).
  if (next.progress_version !== previous.progress_version && next.progress_version !== undefined && previous.progress_version !== undefined) {
    return next.progress_version > previous.progress_version;
  }
  const rankDelta = statusRank[next.status] - statusRank[previous.status];
  if (rankDelta !== 0) return rankDelta > 0;
  if (next.request_counts.processed !== previous.request_counts.processed) {
    return next.request_counts.processed > previous.request_counts.processed;
  }
  return next.webhook.attempts >= previous.webhook.attempts;
}

// ---- throughput history --------------------------------------------------------------------------------------

// Progress samples per batch for this tab, fed by every live stream (the list's and the batch page's), so a batch
// followed on the list still has its throughput curve when its page is opened after it finished.
const progressSamples = new Map();

function record(batch) {
  let samples = progressSamples.get(batch.id);
  if (!samples) progressSamples.set(batch.id, (samples = []));
  const processed = batch.request_counts.processed;
  if (samples.length > 0 && samples.at(-1).processed === processed) return;
  samples.push({ at: performance.now(), processed });
  if (samples.length > maxSamples) samples.splice(0, samples.length - maxSamples);
}

/** Items per second in equal time buckets over the recorded span (up to now while the batch runs). */
function throughput(batch) {
  const samples = progressSamples.get(batch.id) ?? [];
  if (samples.length < 2) return { rates: [], spanSeconds: 0 };
  const start = samples[0].at;
  const end = finalStatuses.has(batch.status) ? samples.at(-1).at : performance.now();
  const span = end - start;
  if (span <= 0) return { rates: [], spanSeconds: 0 };
  const bucketMs = Math.max(span / sparkBuckets, minBucketMs);
  const rates = [];
  let index = 0;
  let previous = samples[0].processed;
  for (let bucketEnd = start + bucketMs; bucketEnd <= end + 1; bucketEnd += bucketMs) {
    while (index + 1 < samples.length && samples[index + 1].at <= bucketEnd) index += 1;
    const processed = samples[index].processed;
    rates.push(((processed - previous) * 1000) / bucketMs);
    previous = processed;
  }
  return { rates, spanSeconds: Math.round(span / 1000) };
}

// ---- the API -------------------------------------------------------------------------------------------------

class Unauthorized extends Error {}

function authHeader(key = sessionStorage.getItem(keyStorage)) {
  return { authorization: `Bearer ${key ?? ''}` };
}

async function problemDetail(response) {
  try {
    const problem = await response.json();
    return problem.detail || problem.title || `HTTP ${response.status}`;
  } catch {
    return `HTTP ${response.status}`;
  }
}

async function api(path, init = {}) {
  const response = await fetch(path, {
    ...init,
    headers: { accept: 'application/json', ...authHeader(), ...init.headers },
    cache: 'no-store',
    credentials: 'omit',
  });
  if (response.status === 401) {
    signOut('The API key was not accepted. Enter it again.');
    throw new Unauthorized('unauthorized');
  }
  if (!response.ok) {
    const error = new Error(await problemDetail(response));
    error.status = response.status;
    throw error;
  }
  return response.json();
}

/** A Server-Sent Events parser (the WHATWG rules that matter here): returns a function to feed decoded text. */
function sseParser(onEvent) {
  let pending = '';
  let eventName = '';
  let data = [];
  let lastId;
  return (text) => {
    let chunk = pending + text;
    pending = '';
    // A CR at the end may be the first half of a CRLF split across chunks.
    if (chunk.endsWith('\r')) { pending = '\r'; chunk = chunk.slice(0, -1); }
    const lines = chunk.split(/\r\n|\r|\n/);
    pending = lines.pop() + pending;
    for (const line of lines) {
      if (line === '') {
        if (data.length > 0) onEvent({ event: eventName || 'message', data: data.join('\n'), id: lastId });
        eventName = '';
        data = [];
        continue;
      }
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon === -1 ? line : line.slice(0, colon);
      let value = colon === -1 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'event') eventName = value;
      else if (field === 'data') data.push(value);
      else if (field === 'id' && !value.includes('\0')) lastId = value;
    }
  };
}

/**
 * Follows a batch's /events stream until its `done` event, reconnecting after a dropped connection with the id of the
 * last event seen (Last-Event-ID), so only newer states arrive; 204 means the final state was seen already.
 * Returns a function that stops following.
 */
function follow(id, onBatch, onDone) {
  const abort = new AbortController();
  (async () => {
    let retryMs = 500;
    let lastEventId;
    while (!abort.signal.aborted) {
      let finished = false;
      try {
        const resume = lastEventId === undefined ? {} : { 'last-event-id': lastEventId };
        const response = await fetch(`/v1/batch/${encodeURIComponent(id)}/events`, {
          headers: { accept: 'text/event-stream', ...authHeader(), ...resume },
          cache: 'no-store',
          credentials: 'omit',
          signal: abort.signal,
        });
        if (response.status === 401) { signOut('The API key was not accepted. Enter it again.'); return; }
        if (response.status === 404) return;
        if (response.status === 204) { onDone?.(); return; }
        if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
        const feed = sseParser((event) => {
          if (event.event !== 'progress' && event.event !== 'done') return;
          if (event.id !== undefined) lastEventId = event.id;
          onBatch(JSON.parse(event.data));
          if (event.event === 'done') finished = true;
        });
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          feed(value);
          retryMs = 500;
        }
      } catch {
        // Dropped or refused: try again below unless we were stopped.
      }
      if (abort.signal.aborted) return;
      if (finished) { onDone?.(); return; }
      await sleep(retryMs, abort.signal);
      retryMs = Math.min(retryMs * 2, 10_000);
    }
  })();
  return () => abort.abort();
}

/** A batch's metadata as `key=value · key=value`, or '' when it has none. */
function metadataText(metadata) {
  return Object.entries(metadata ?? {}).map(([key, value]) => `${key}=${value}`).join(' · ');
}

/**
 * Saves a batch's results.ndjson or errors.ndjson. The key never goes in a URL, so the file is fetched with the
 * Authorization header (gzip on the wire) and handed to the browser as a blob.
 */
async function downloadFile(id, kind, status) {
  status.textContent = `Downloading ${kind}.ndjson…`;
  try {
    const response = await fetch(`/v1/batch/${encodeURIComponent(id)}/${kind}.ndjson`, {
      headers: authHeader(), cache: 'no-store', credentials: 'omit',
    });
    if (response.status === 401) { signOut('The API key was not accepted. Enter it again.'); return; }
    if (!response.ok) throw new Error(await problemDetail(response));
    const blob = await response.blob();
    const url = URL.createObjectURL(blob);
    const link = h('a', { href: url, download: `${id}-${kind}.ndjson`, hidden: '' });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
    status.textContent = `Saved ${id}-${kind}.ndjson (${bytes(blob.size)}).`;
  } catch (error) {
    status.textContent = `Could not download ${kind}.ndjson: ${error.message}`;
  }
}

// ---- progress bar --------------------------------------------------------------------------------------------

function progressBar(label) {
  const fill = h('div', { class: 'bar-fill' });
  const bar = h('div', {
    class: 'bar', role: 'progressbar', 'aria-label': label,
    'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': 0,
  }, fill);
  const text = h('span', { class: 'bar-text', 'aria-hidden': 'true' }, '0 %');
  const root = h('div', { class: 'progress' }, bar, text);
  return {
    root,
    update(batch) {
      const percent = percentOf(batch);
      const { processed, total } = batch.request_counts;
      bar.setAttribute('aria-valuenow', String(percent));
      bar.setAttribute('aria-valuetext', `${integer.format(processed)} of ${integer.format(total)} items, ${percent} %, ${batch.status}`);
      fill.style.width = `${percent}%`;
      fill.className = `bar-fill is-${batch.status}`;
      text.textContent = `${percent} %`;
    },
  };
}

// ---- session -------------------------------------------------------------------------------------------------

let stopView = () => {};

function signOut(message) {
  sessionStorage.removeItem(keyStorage);
  stopView();
  stopView = () => {};
  $('signed-in').hidden = true;
  $('forget-key').hidden = true;
  $('key-error').textContent = message ?? '';
  show('view-key');
  document.title = 'Sign in · batchmem';
  $('api-key').value = '';
  $('api-key').focus();
}

async function onKeySubmit(event) {
  event.preventDefault();
  const input = $('api-key');
  const key = input.value.trim();
  const error = $('key-error');
  if (!key) { error.textContent = 'Enter an API key.'; input.focus(); return; }
  error.textContent = '';
  const button = event.submitter ?? $('key-form').querySelector('button');
  button.disabled = true;
  try {
    const response = await fetch('/v1/batch?limit=1', { headers: authHeader(key), cache: 'no-store', credentials: 'omit' });
    if (response.status === 401) { error.textContent = 'That API key was not accepted.'; input.select(); return; }
    if (!response.ok) { error.textContent = `The server answered: ${await problemDetail(response)}`; return; }
    sessionStorage.setItem(keyStorage, key);
    input.value = '';
    route({ focus: true });
  } catch {
    error.textContent = 'The server could not be reached. Try again.';
  } finally {
    button.disabled = false;
  }
}

// ---- the batch list ------------------------------------------------------------------------------------------

function showList(focus) {
  show('view-list');
  document.title = 'Batches · batchmem';
  if (focus) $('list-heading').focus();
  const tbody = $('batch-rows');
  tbody.replaceChildren();
  const rows = new Map();
  const streams = new Map();
  const status = $('status-filter').value;
  let nextCursor = null;
  let stopped = false;

  const buildRow = (batch) => {
    const link = h('a', { href: `/ui/batch/${encodeURIComponent(batch.id)}`, class: 'batch-link mono', 'data-nav': '' }, batch.id);
    const badge = h('span');
    const bar = progressBar(`Progress of batch ${batch.id}`);
    const items = h('span');
    const itemsSub = h('span', { class: 'sub' });
    const compression = h('span');
    const compressionSub = h('span', { class: 'sub' });
    const ageCell = h('td', { 'data-label': 'Age' }, timeElement(batch.created_at));
    const labels = metadataText(batch.metadata);
    const tr = h('tr', { 'data-batch-id': batch.id },
      h('td', { 'data-label': 'Batch' }, link, labels ? h('span', { class: 'sub labels' }, labels) : undefined),
      h('td', { 'data-label': 'Status' }, badge),
      h('td', { 'data-label': 'Progress' }, bar.root),
      h('td', { 'data-label': 'Items', class: 'num' }, h('div', {}, items, itemsSub)),
      h('td', { 'data-label': 'Compression', class: 'num' }, h('div', {}, compression, compressionSub)),
      ageCell,
    );
    const row = {
      tr,
      batch: undefined,
      update(next) {
        if (!newer(row.batch, next)) return;
        record(next);
        const wasFinal = row.batch && finalStatuses.has(row.batch.status);
        row.batch = next;
        statusBadge(badge, next.status);
        bar.update(next);
        const counts = next.request_counts;
        items.textContent = `${integer.format(counts.processed)} / ${integer.format(counts.total)}`;
        itemsSub.textContent = counts.expired > 0
          ? `${integer.format(counts.expired)} ${next.status}`
          : counts.failed > 0 ? `${integer.format(counts.failed)} failed` : `${integer.format(counts.succeeded)} stored`;
        compression.textContent = ratio(next);
        compressionSub.textContent = next.payload.stored_bytes > 0 ? `${bytes(next.payload.raw_bytes)} → ${bytes(next.payload.stored_bytes)}` : '';
        if (!wasFinal && row.batch && finalStatuses.has(next.status) && streams.has(next.id)) announce(`Batch ${next.id} ${next.status}`);
      },
    };
    row.update(batch);
    return row;
  };

  const startStreams = () => {
    for (const [id, row] of rows) {
      if (streams.size >= maxLiveStreams) return;
      if (streams.has(id) || finalStatuses.has(row.batch.status)) continue;
      const stop = follow(id, (batch) => row.update(batch), () => {
        streams.delete(id);
        if (!stopped) startStreams();
      });
      streams.set(id, stop);
    }
  };

  const query = (cursor) => {
    const params = new URLSearchParams({ limit: String(listPageSize) });
    if (status) params.set('status', status);
    if (cursor) params.set('cursor', cursor);
    return `/v1/batch?${params}`;
  };

  const renderSummary = () => {
    const live = streams.size;
    $('list-summary').textContent = rows.size === 0
      ? (status ? `No ${status} batches.` : 'No batches yet. Submit one with POST /v1/memory/batch.')
      : `${integer.format(rows.size)} batch${rows.size === 1 ? '' : 'es'} shown${live ? `, ${live} followed live` : ''}.`;
    $('load-more').hidden = !nextCursor;
  };

  const merge = (page, { first }) => {
    const ordered = [];
    for (const batch of page.data) {
      let row = rows.get(batch.id);
      if (row) row.update(batch);
      else { row = buildRow(batch); rows.set(batch.id, row); }
      ordered.push(row.tr);
    }
    // The first page is newest first: new batches go on top, rows loaded with "Load more" stay below.
    if (first) tbody.prepend(...ordered);
    else tbody.append(...ordered);
  };

  const showError = (error) => {
    if (error instanceof Unauthorized) return;
    $('list-error').hidden = false;
    $('list-error').textContent = `Could not load batches: ${error.message}`;
  };

  const refresh = async () => {
    try {
      const page = await api(query());
      if (stopped) return;
      $('list-error').hidden = true;
      merge(page, { first: true });
      if (rows.size <= page.data.length) nextCursor = page.next_cursor;
      startStreams();
      renderSummary();
    } catch (error) {
      if (!stopped) showError(error);
    }
  };

  const loadMore = async () => {
    const button = $('load-more');
    button.disabled = true;
    try {
      const page = await api(query(nextCursor));
      if (stopped) return;
      merge(page, { first: false });
      nextCursor = page.next_cursor;
      startStreams();
      renderSummary();
    } catch (error) {
      showError(error);
    } finally {
      button.disabled = false;
    }
  };

  $('load-more').onclick = loadMore;
  $('status-filter').onchange = () => route({});
  refresh();
  const poll = setInterval(refresh, listPollMs);
  const ages = setInterval(refreshAges, 10_000);
  return () => {
    stopped = true;
    clearInterval(poll);
    clearInterval(ages);
    for (const stop of streams.values()) stop();
    streams.clear();
  };
}

function refreshAges() {
  for (const time of document.querySelectorAll('time[data-age]')) time.textContent = age(time.getAttribute('data-age'));
}

// ---- one batch -----------------------------------------------------------------------------------------------

function statList(dl, entries) {
  // Short values stay on one line; URLs and error messages may wrap anywhere.
  const short = (value) => typeof value === 'string' && value.length <= 24;
  dl.replaceChildren(...entries.flatMap(([term, value]) => [h('dt', {}, term), h('dd', { class: short(value) ? 'nowrap' : undefined }, value)]));
}

function sparkline(container, rates, windowSeconds) {
  const width = 240;
  const height = 48;
  if (rates.length < 2) {
    container.replaceChildren(h('p', {}, 'The curve is drawn from live progress while this tab follows the batch.'));
    return;
  }
  const peak = Math.max(...rates, 1);
  const step = width / (rates.length - 1);
  const points = rates.map((rate, i) => `${(i * step).toFixed(1)},${(height - 2 - (rate / peak) * (height - 4)).toFixed(1)}`);
  const label = `Throughput over the last ${windowSeconds} seconds: now ${integer.format(Math.round(rates.at(-1)))} items per second, peak ${integer.format(Math.round(peak))}`;
  container.replaceChildren(svg('svg', { viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: 'none', role: 'img', 'aria-label': label },
    svg('title', {}, label),
    svg('polygon', { class: 'spark-area', points: `0,${height} ${points.join(' ')} ${width},${height}` }),
    svg('polyline', { class: 'spark-line', points: points.join(' ') })));
}

function showBatch(id, focus) {
  show('view-batch');
  document.title = `Batch ${id} · batchmem`;
  $('batch-id').textContent = id;
  if (focus) $('batch-heading').focus();
  for (const element of ['batch-counts', 'batch-timing', 'batch-payload', 'batch-webhook', 'batch-labels', 'error-rows']) $(element).replaceChildren();
  $('download-results').onclick = () => downloadFile(id, 'results', $('download-status'));
  $('download-errors').onclick = () => downloadFile(id, 'errors', $('download-status'));
  $('download-status').textContent = '';
  $('batch-error').hidden = true;
  $('batch-failure').hidden = true;
  $('cancel-open').hidden = true;
  $('redeliver-webhook').hidden = true;
  $('redeliver-status').textContent = '';
  $('batch-status').textContent = '';
  const bar = progressBar(`Progress of batch ${id}`);
  $('batch-progress').replaceChildren(bar.root);

  let batch;
  let stopped = false;
  let stopStream = () => {};
  let ticker;
  let webhookTimer;
  const errorCursors = [null];
  let errorPage = 0;

  const renderThroughput = () => {
    const { rates, spanSeconds } = throughput(batch);
    sparkline($('sparkline'), rates, spanSeconds);
    const parts = [];
    if (rates.length > 0 && !finalStatuses.has(batch.status)) parts.push(`Now ${integer.format(Math.round(rates.at(-1)))} items/s`);
    if (rates.length > 0) parts.push(`peak ${integer.format(Math.round(Math.max(...rates)))} items/s`);
    if (batch.started_at) {
      const end = batch.completed_at ? new Date(batch.completed_at).getTime() : Date.now();
      const seconds = (end - new Date(batch.started_at).getTime()) / 1000;
      if (seconds > 0) parts.push(`average ${integer.format(Math.round(batch.request_counts.processed / seconds))} items/s`);
    }
    $('throughput-text').textContent = parts.length ? `${parts.join(' · ')}.` : 'Not started yet.';
  };

  const renderTiming = () => {
    const started = batch.started_at ? new Date(batch.started_at).getTime() : NaN;
    const ended = batch.completed_at ? new Date(batch.completed_at).getTime() : Date.now();
    statList($('batch-timing'), [
      ['Created', timeElement(batch.created_at)],
      ['Started', timeElement(batch.started_at)],
      ['Finished', timeElement(batch.completed_at)],
      [batch.completed_at ? 'Took' : 'Running for', duration(ended - started)],
    ]);
  };

  const render = () => {
    statusBadge($('batch-status'), batch.status);
    bar.update(batch);
    $('cancel-open').hidden = !cancellable.has(batch.status);
    const counts = batch.request_counts;
    statList($('batch-counts'), [
      ['Total', integer.format(counts.total)],
      ['Processed', integer.format(counts.processed)],
      ['Succeeded', integer.format(counts.succeeded)],
      ['Failed', integer.format(counts.failed)],
      // Items without an outcome when the completion window passed (0 unless the batch ended that way).
      ...(counts.expired > 0 ? [['Not processed in time', integer.format(counts.expired)]] : []),
      ['Remaining', integer.format(Math.max(0, counts.total - counts.processed - (counts.expired ?? 0)))],
    ]);
    statList($('batch-labels'), [
      ['Completion window', batch.completion_window ?? 'None'],
      ['Expires', batch.expires_at ? timeElement(batch.expires_at) : '—'],
      ['Metadata', metadataText(batch.metadata) || '—'],
    ]);
    $('download-results').disabled = false;
    $('download-errors').disabled = counts.failed + (counts.expired ?? 0) === 0;
    renderTiming();
    statList($('batch-payload'), [
      ['Codec', batch.payload.codec],
      ['Segments', integer.format(batch.payload.segments)],
      ['Raw size', bytes(batch.payload.raw_bytes)],
      ['Stored size', bytes(batch.payload.stored_bytes)],
      ['Compression ratio', ratio(batch)],
    ]);
    const webhook = batch.webhook;
    let delivery;
    if (!webhook.url) delivery = 'No webhook configured';
    else if (webhook.delivered) delivery = 'Delivered';
    else if (!finalStatuses.has(batch.status)) delivery = 'Sent when the batch finishes';
    else if (webhook.attempts === 0) delivery = 'Pending';
    else delivery = 'Not delivered yet (retrying)';
    statList($('batch-webhook'), [
      ['Delivery', delivery],
      ['URL', webhook.url ? h('span', { class: 'mono' }, webhook.url) : '—'],
      ['Attempts', integer.format(webhook.attempts)],
      ['Last error', webhook.last_error ?? '—'],
    ]);
    // A final batch's event can be sent again (same webhook-id), e.g. after the receiver was fixed.
    $('redeliver-webhook').hidden = !webhook.url || !finalStatuses.has(batch.status);
    $('batch-failure').hidden = !batch.error;
    $('batch-failure').textContent = batch.error ? `The batch ${batch.status}: ${batch.error}` : '';
    renderThroughput();
  };

  const apply = (next) => {
    if (stopped || !newer(batch, next)) return;
    const wasFinal = batch && finalStatuses.has(batch.status);
    const firstView = !batch;
    batch = next;
    record(batch);
    render();
    if (!firstView && !wasFinal && finalStatuses.has(batch.status)) announce(`Batch ${batch.id} ${batch.status}`);
  };

  const loadErrors = async (page) => {
    try {
      const params = new URLSearchParams({ limit: String(errorsPageSize) });
      if (errorCursors[page]) params.set('cursor', errorCursors[page]);
      const result = await api(`/v1/batch/${encodeURIComponent(id)}/errors?${params}`);
      if (stopped) return;
      errorPage = page;
      errorCursors[page + 1] = result.next_cursor;
      errorCursors.length = page + 2;
      $('error-rows').replaceChildren(...result.data.map((item) => h('tr', {},
        h('td', {}, integer.format(item.index)),
        h('td', { class: 'mono' }, item.external_id ?? '—'),
        h('td', {}, item.error))));
      const none = page === 0 && result.data.length === 0;
      $('errors-empty').hidden = !none;
      $('errors-table').hidden = none;
      $('errors-prev').disabled = page === 0;
      $('errors-next').disabled = !result.next_cursor;
      const from = page * errorsPageSize + 1;
      const failed = batch ? batch.request_counts.failed : 0;
      $('errors-page').textContent = none ? '' : result.data.length === 0
        ? `Page ${page + 1}: no more errors`
        : `Page ${page + 1}: errors ${integer.format(from)}–${integer.format(from + result.data.length - 1)} of ${integer.format(failed)}`;
    } catch (error) {
      if (!(error instanceof Unauthorized) && !stopped) {
        $('errors-page').textContent = `Could not load errors: ${error.message}`;
      }
    }
  };

  const pollWebhook = async (remaining) => {
    if (stopped || remaining === 0 || !batch.webhook.url || batch.webhook.delivered) return;
    webhookTimer = setTimeout(async () => {
      try { apply(await api(`/v1/batch/${encodeURIComponent(id)}`)); } catch { /* next poll */ }
      pollWebhook(remaining - 1);
    }, webhookPollMs);
  };

  const whenFinal = () => {
    clearInterval(ticker);
    loadErrors(errorPage);
    pollWebhook(webhookPollLimit);
  };

  $('errors-prev').onclick = () => loadErrors(Math.max(0, errorPage - 1));
  $('errors-next').onclick = () => loadErrors(errorPage + 1);

  $('redeliver-webhook').onclick = async () => {
    const button = $('redeliver-webhook');
    button.disabled = true;
    $('redeliver-status').textContent = '';
    try {
      const next = await api(`/v1/batch/${encodeURIComponent(id)}/webhook/redeliver`, { method: 'POST' });
      if (stopped) return;
      // The delivery state starts again (0 attempts), which `newer` would take for an older answer.
      batch = next;
      record(batch);
      render();
      $('redeliver-status').textContent = 'Sending the webhook again.';
      clearTimeout(webhookTimer);
      pollWebhook(webhookPollLimit);
    } catch (error) {
      if (!(error instanceof Unauthorized)) $('redeliver-status').textContent = `Could not send the webhook again: ${error.message}`;
    } finally {
      button.disabled = false;
    }
  };

  const dialog = $('cancel-dialog');
  $('cancel-open').onclick = () => {
    dialog.returnValue = '';
    dialog.showModal();
  };
  dialog.onclose = async () => {
    if (dialog.returnValue !== 'confirm' || stopped) { $('cancel-open').focus(); return; }
    $('cancel-open').disabled = true;
    try {
      apply(await api(`/v1/batch/${encodeURIComponent(id)}/cancel`, { method: 'POST' }));
      announce(`Cancelling batch ${id}`);
    } catch (error) {
      if (!(error instanceof Unauthorized)) {
        $('batch-error').hidden = false;
        $('batch-error').textContent = `Could not cancel: ${error.message}`;
      }
    } finally {
      $('cancel-open').disabled = false;
    }
    $('batch-heading').focus();
  };

  (async () => {
    try {
      apply(await api(`/v1/batch/${encodeURIComponent(id)}`));
    } catch (error) {
      if (error instanceof Unauthorized || stopped) return;
      $('batch-error').hidden = false;
      $('batch-error').textContent = error.status === 404 ? `There is no batch ${id} for this key.` : `Could not load the batch: ${error.message}`;
      return;
    }
    loadErrors(0);
    if (finalStatuses.has(batch.status)) { whenFinal(); return; }
    // Between events the curve still moves (a stall shows as zero) and "running for" keeps counting.
    ticker = setInterval(() => { renderTiming(); renderThroughput(); }, 1000);
    stopStream = follow(id, apply, whenFinal);
  })();

  return () => {
    stopped = true;
    stopStream();
    clearInterval(ticker);
    clearTimeout(webhookTimer);
    if (dialog.open) dialog.close();
  };
}

// ---- lifecycle -----------------------------------------------------------------------------------------------

async function loadLifecycle() {
  const response = await fetch('/openapi.json', { headers: { accept: 'application/json' }, credentials: 'omit' });
  if (!response.ok) throw new Error(`HTTP ${response.status} for /openapi.json`);
  const status = (await response.json()).components.schemas.Batch.properties.status;
  finalStatuses = new Set(status['x-final']);
  cancellable = new Set(status['x-cancellable']);
  completedStatus = status['x-completed'];
  const unfinished = status['x-unfinished'];
  statusRank = Object.fromEntries(status.enum.map((name) => [name, finalStatuses.has(name) ? unfinished.length : unfinished.indexOf(name)]));
  const filter = $('status-filter');
  for (const name of [...unfinished, ...status.enum.filter((name) => finalStatuses.has(name))]) {
    filter.append(h('option', { value: name }, name.charAt(0).toUpperCase() + name.slice(1)));
  }
}

// ---- routing -------------------------------------------------------------------------------------------------

function route({ focus = false } = {}) {
  stopView();
  stopView = () => {};
  if (!sessionStorage.getItem(keyStorage)) { signOut(''); return; }
  $('signed-in').hidden = false;
  $('forget-key').hidden = false;
  const match = /^\/ui\/batch\/([^/]+)\/?$/.exec(location.pathname);
  stopView = match ? showBatch(decodeURIComponent(match[1]), focus) : showList(focus);
}

function navigate(path) {
  history.pushState(null, '', path);
  route({ focus: true });
}

document.addEventListener('click', (event) => {
  const link = event.target.closest('a[data-nav]');
  if (!link || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  event.preventDefault();
  navigate(link.getAttribute('href'));
});
window.addEventListener('popstate', () => route({ focus: true }));
$('key-form').addEventListener('submit', onKeySubmit);
$('forget-key').addEventListener('click', () => signOut('The key was removed from this tab.'));
for (const heading of ['list-heading', 'batch-heading', 'key-heading']) $(heading).setAttribute('tabindex', '-1');
loadLifecycle().then(() => route(), (error) => {
  show('view-key');
  $('key-error').textContent = `The dashboard could not read the API description: ${error.message}`;
});
