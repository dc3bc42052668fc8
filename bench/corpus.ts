// A deterministic corpus of realistic memories for the benchmarks: chat turns, notes, document excerpts and code
// snippets with metadata, 100 B to 20 KB serialized, log-normal sizes. No external data: text is drawn from a
// built-in vocabulary with Zipf-like word frequencies, so it compresses roughly like English prose does.
// Memory i depends only on (seed, i), so any slice of the corpus can be generated alone, in any order.
import type { MemoryItem } from '../src/domain/memory.ts';

export const defaultSeed = 20_260_901;
export const minMemoryBytes = 100;
export const maxMemoryBytes = 20 * 1024;

/** mulberry32: small, fast, good enough for test data. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/** Mixes the corpus seed and an index into one well-spread 32-bit seed (splitmix-style finalizer). */
function seedFor(seed: number, index: number): number {
  let h = (seed ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

const words = `
the of and to a in is it you that he was for on are with as I his they be at one have this from or had by not
word but what some we can out other were all there when up use your how said an each she which do their time if
will way about many then them write would like so these her long make thing see him two has look more day could go
come did number sound no most people my over know water than call first who may down side been now find any new work
part take get place made live where after back little only round man year came show every good me give our under name
very through just form sentence great think say help low line differ turn cause much mean before move right boy old
too same tell does set three want air well also play small end put home read hand port large spell add even land here
must big high such follow act why ask men change went light kind off need house picture try us again animal point
mother world near build self earth father head stand own page should country found answer school grow study still
learn plant cover food sun four between state keep eye never last let thought city tree cross farm hard start might
story saw far sea draw left late run while press close night real life few north open seem together next white
children begin got walk example ease paper group always music those both mark often letter until mile river car feet
care second book carry took science eat room friend began idea fish mountain stop once base hear horse cut sure watch
color face wood main enough plain girl usual young ready above ever red list though feel talk bird soon body dog family
direct pose leave song measure door product black short numeral class wind question happen complete ship area half
rock order fire south problem piece told knew pass since top whole king space heard best hour better true during
hundred five remember step early hold west ground interest reach fast verb sing listen six table travel less morning
ten simple several vowel toward war lay against pattern slow center love person money serve appear road map rain rule
govern pull cold notice voice unit power town fine certain fly fall lead cry dark machine note wait plan figure star
box noun field rest correct able pound done beauty drive stood contain front teach week final gave green quick develop
ocean warm free minute strong special mind behind clear tail produce fact street inch multiply nothing course stay
wheel full force blue object decide surface deep moon island foot system busy test record boat common gold possible
plane stead dry wonder laugh thousand ago ran check game shape equate miss brought heat snow tire bring yes distant
fill east paint language among customer project deadline meeting release budget roadmap feature customer invoice
preference allergy birthday flight hotel booking subscription account password dashboard report quarter revenue
latency database migration deployment incident outage cluster service endpoint schema index query cache token model
embedding vector memory context prompt summary agent workflow pipeline batch segment payload storage bucket
`.trim().split(/\s+/);

const names = ['Alice', 'Bob', 'Chen', 'Dana', 'Emeka', 'Fatima', 'Gustavo', 'Hana', 'Ivan', 'Jun', 'Kofi', 'Lena', 'Mateo', 'Nadia', 'Omar', 'Priya'];
const places = ['Lisbon', 'Osaka', 'Nairobi', 'Toronto', 'Berlin', 'Lima', 'Seoul', 'Austin', 'Dublin', 'Pune'];
const sources = ['slack', 'email', 'web-chat', 'notion', 'github', 'gdrive', 'zendesk', 'mobile-app'];
const languages = ['en', 'en', 'en', 'en', 'de', 'fr', 'es', 'pt', 'ja'];
const identifiers = ['user', 'batch', 'segment', 'memory', 'item', 'result', 'config', 'client', 'store', 'queue', 'event', 'record', 'token', 'cursor', 'limit', 'count', 'index', 'value', 'key', 'options'];
const verbs = ['get', 'set', 'load', 'save', 'parse', 'build', 'read', 'write', 'find', 'update', 'create', 'delete', 'check', 'merge', 'split', 'encode'];

export type MemoryKind = 'chat' | 'note' | 'document' | 'code';

// Share of each kind, and the median and spread (sigma of ln bytes) of its serialized size.
const kinds: { kind: MemoryKind; share: number; medianBytes: number; sigma: number }[] = [
  { kind: 'chat', share: 0.45, medianBytes: 350, sigma: 0.8 },
  { kind: 'note', share: 0.25, medianBytes: 600, sigma: 0.9 },
  { kind: 'document', share: 0.18, medianBytes: 2500, sigma: 0.9 },
  { kind: 'code', share: 0.12, medianBytes: 1400, sigma: 0.8 },
];

class Writer {
  readonly #next: () => number;
  constructor(next: () => number) {
    this.#next = next;
  }
  float(): number {
    return this.#next();
  }
  int(below: number): number {
    return Math.floor(this.#next() * below);
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  /** Zipf-like: low ranks (common words) far more often than high ones. */
  word(): string {
    const rank = Math.floor(words.length * Math.pow(this.#next(), 2.2));
    return words[rank]!;
  }
  normal(): number {
    const u = Math.max(this.#next(), 1e-12);
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.#next());
  }
  hex(length: number): string {
    let out = '';
    while (out.length < length) out += Math.floor(this.#next() * 0x1_0000_0000).toString(16).padStart(8, '0');
    return out.slice(0, length);
  }
  /** A token that is not a plain word now and then: names, numbers, dates, places. */
  token(): string {
    const roll = this.#next();
    if (roll < 0.04) return this.pick(names);
    if (roll < 0.06) return this.pick(places);
    if (roll < 0.09) return String(this.int(roll < 0.075 ? 100 : 100_000));
    if (roll < 0.1) return `2025-${String(1 + this.int(12)).padStart(2, '0')}-${String(1 + this.int(28)).padStart(2, '0')}`;
    return this.word();
  }
  sentence(): string {
    const length = 5 + this.int(16);
    const parts: string[] = [];
    for (let i = 0; i < length; i++) parts.push(this.token());
    if (length > 10 && this.#next() < 0.4) parts[4 + this.int(length - 6)] += ',';
    const text = parts.join(' ');
    return text.charAt(0).toUpperCase() + text.slice(1) + this.pick(['.', '.', '.', '.', '?', '!']);
  }
  paragraph(sentences: number): string {
    return Array.from({ length: sentences }, () => this.sentence()).join(' ');
  }
}

function chat(w: Writer, budget: number): string {
  const user = w.pick(names);
  const turns: string[] = [];
  let bytes = 0;
  do {
    const speaker = turns.length % 2 === 0 ? user : 'assistant';
    const turn = `${speaker}: ${w.paragraph(1 + w.int(3))}`;
    turns.push(turn);
    bytes += turn.length + 1;
  } while (bytes < budget);
  return turns.join('\n');
}

function note(w: Writer, budget: number): string {
  const lines = [`# ${w.sentence().slice(0, -1)}`];
  let bytes = lines[0]!.length;
  while (bytes < budget) {
    const roll = w.float();
    const line = roll < 0.5 ? `- ${w.sentence()}` : roll < 0.65 ? `- [ ] TODO ${w.sentence()}` : w.paragraph(1 + w.int(2));
    lines.push(line);
    bytes += line.length + 1;
  }
  return lines.join('\n');
}

function document(w: Writer, budget: number): string {
  const parts = [`## ${w.sentence().slice(0, -1)}`];
  let bytes = parts[0]!.length;
  while (bytes < budget) {
    const paragraph = w.float() < 0.15 ? `### ${w.sentence().slice(0, -1)}` : w.paragraph(2 + w.int(5));
    parts.push(paragraph);
    bytes += paragraph.length + 2;
  }
  return parts.join('\n\n');
}

function code(w: Writer, budget: number): string {
  const lines: string[] = [];
  let bytes = 0;
  const typescript = w.float() < 0.6;
  while (bytes < budget) {
    const name = `${w.pick(verbs)}${capitalize(w.pick(identifiers))}`;
    const args = Array.from({ length: 1 + w.int(3) }, () => w.pick(identifiers));
    const body: string[] = [];
    for (let i = 0, n = 2 + w.int(6); i < n; i++) {
      const target = w.pick(identifiers) + (w.float() < 0.3 ? String(w.int(10)) : '');
      const call = `${w.pick(verbs)}${capitalize(w.pick(identifiers))}(${w.pick(args)}, ${w.int(1000)})`;
      const roll = w.float();
      if (typescript) {
        body.push(roll < 0.15 ? `  // ${w.sentence()}` : roll < 0.25 ? `  if (!${target}) throw new Error('${w.sentence()}');` : `  const ${target} = await ${call};`);
      } else {
        body.push(roll < 0.15 ? `    # ${w.sentence()}` : roll < 0.25 ? `    if not ${target}:\n        raise ValueError("${w.sentence()}")` : `    ${target} = ${snake(call)}`);
      }
    }
    const block = typescript
      ? `export async function ${name}(${args.join(', ')}) {\n${body.join('\n')}\n  return ${w.pick(args)};\n}\n`
      : `def ${snake(name)}(${args.join(', ')}):\n${body.join('\n')}\n    return ${w.pick(args)}\n`;
    lines.push(block);
    bytes += block.length;
  }
  return lines.join('\n');
}

function capitalize(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

function snake(text: string): string {
  return text.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

function metadataFor(w: Writer, kind: MemoryKind, index: number): Record<string, unknown> {
  const day = 1 + w.int(28);
  const metadata: Record<string, unknown> = {
    source: w.pick(sources),
    created_at: `2025-${String(1 + w.int(12)).padStart(2, '0')}-${String(day).padStart(2, '0')}T${String(w.int(24)).padStart(2, '0')}:${String(w.int(60)).padStart(2, '0')}:00Z`,
    author: w.pick(names).toLowerCase(),
    tags: Array.from({ length: w.int(4) }, () => w.word()),
  };
  if (kind === 'chat') {
    metadata.conversation_id = `conv_${w.hex(16)}`;
    metadata.turn = index % 40;
  }
  if (kind === 'document') {
    metadata.document = { title: w.sentence().slice(0, -1), page: 1 + w.int(300), lang: w.pick(languages) };
  }
  if (kind === 'code') {
    metadata.repository = `${w.pick(names).toLowerCase()}/${w.pick(identifiers)}-${w.pick(identifiers)}`;
    metadata.path = `src/${w.pick(identifiers)}/${w.pick(verbs)}-${w.pick(identifiers)}.${w.float() < 0.6 ? 'ts' : 'py'}`;
  }
  if (w.float() < 0.3) metadata.importance = Math.round(w.float() * 100) / 100;
  return metadata;
}

/** The memory at `index` of the corpus with this seed. Its serialized size is within 100 B .. 20 KB. */
export function corpusMemory(index: number, seed = defaultSeed): MemoryItem {
  const w = new Writer(random(seedFor(seed, index)));
  const roll = w.float();
  let cumulative = 0;
  const shape = kinds.find((k) => (cumulative += k.share) > roll) ?? kinds[0]!;
  const target = Math.min(maxMemoryBytes, Math.max(minMemoryBytes, Math.round(shape.medianBytes * Math.exp(shape.sigma * w.normal()))));
  const metadata = metadataFor(w, shape.kind, index);
  const item: MemoryItem = { content: '', type: shape.kind, metadata, external_id: `${shape.kind}-${index}-${w.hex(8)}` };
  // Quick chat lines often come bare, without metadata or an external id: the small end of the distribution.
  if (shape.kind === 'chat' && w.float() < 0.15) {
    delete item.metadata;
    delete item.external_id;
  }
  const overhead = Buffer.byteLength(JSON.stringify(item));
  const budget = Math.max(20, target - overhead);
  const text = { chat, note, document, code }[shape.kind](w, budget);
  item.content = fitBytes(text, Math.max(20, maxMemoryBytes - overhead - 64));
  // Only the serialized size is bounded: escapes (newlines, quotes) can push a large item over, so trim once more.
  while (Buffer.byteLength(JSON.stringify(item)) > maxMemoryBytes) item.content = item.content.slice(0, Math.floor(item.content.length * 0.95));
  return item;
}

function fitBytes(text: string, maxBytes: number): string {
  return text.length <= maxBytes ? text : text.slice(0, maxBytes);
}

/** Memories `from` .. `from + count - 1` of the corpus, generated lazily. */
export function* corpus(count: number, options: { seed?: number; from?: number } = {}): Generator<MemoryItem> {
  const from = options.from ?? 0;
  for (let i = from; i < from + count; i++) yield corpusMemory(i, options.seed);
}

/** The corpus as an NDJSON byte stream, in chunks of a few hundred lines, generated as the reader pulls. */
export function corpusNdjson(count: number, options: { seed?: number; from?: number } = {}): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  const from = options.from ?? 0;
  let next = from;
  const end = from + count;
  return new ReadableStream({
    pull(controller) {
      if (next >= end) return controller.close();
      const lines: string[] = [];
      for (const stop = Math.min(end, next + 256); next < stop; next++) lines.push(JSON.stringify(corpusMemory(next, options.seed)));
      controller.enqueue(encoder.encode(lines.join('\n') + '\n'));
    },
  });
}

export interface CorpusStats {
  count: number;
  totalBytes: number;
  meanBytes: number;
  p50Bytes: number;
  p90Bytes: number;
  p99Bytes: number;
  minBytes: number;
  maxBytes: number;
  byKind: Record<string, number>;
}

export function describeCorpus(count: number, seed = defaultSeed): CorpusStats {
  const sizes: number[] = [];
  const byKind: Record<string, number> = {};
  for (const item of corpus(count, { seed })) {
    sizes.push(Buffer.byteLength(JSON.stringify(item)));
    byKind[item.type!] = (byKind[item.type!] ?? 0) + 1;
  }
  sizes.sort((a, b) => a - b);
  const at = (q: number) => sizes[Math.min(sizes.length - 1, Math.floor(q * sizes.length))]!;
  const totalBytes = sizes.reduce((sum, size) => sum + size, 0);
  return {
    count,
    totalBytes,
    meanBytes: Math.round(totalBytes / count),
    p50Bytes: at(0.5),
    p90Bytes: at(0.9),
    p99Bytes: at(0.99),
    minBytes: sizes[0]!,
    maxBytes: sizes.at(-1)!,
    byKind,
  };
}
