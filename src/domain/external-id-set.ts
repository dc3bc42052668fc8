// The external ids one batch has named so far, kept compactly: an upload of 1,000,000 memories names up to a million
// of them, and a Map of strings held them at about 70 bytes each on the request thread's heap (a third of the API
// process's peak RSS growth at 1,000,000; docs/benchmarks.md). Here an id costs its characters plus about 30 bytes,
// in typed arrays outside the JavaScript heap, and the set stays exact: ids are compared character by character.
import { releaseBuffer } from './buffer-release.ts';

/** Characters of ids stored per chunk; an id (at most 256 UTF-16 units by the schema) always fits in one chunk. */
const chunkUnits = 128 * 1024;
const initialEntries = 1024;

/**
 * An exact set of strings, each remembered with a number (the index of the item that named it first).
 * Open addressing with linear probing over a power-of-two slot table, at most half full; each id's UTF-16 code units
 * are copied into chunked arenas (one byte per unit when every unit is below 256, as most ids are).
 */
export class ExternalIdSet {
  /** Slot → entry number + 1 (0: empty). */
  #slots = new Uint32Array(initialEntries * 2);
  #hashes = new Uint32Array(initialEntries);
  /** Entry → where its units start: chunk number × chunkUnits + offset. */
  #starts = new Float64Array(initialEntries);
  /** Entry → its length in units, negative when stored two bytes a unit. */
  #lengths = new Int32Array(initialEntries);
  #values = new Uint32Array(initialEntries);
  #size = 0;
  readonly #narrow: Uint8Array[] = [];
  readonly #wide: Uint16Array[] = [];
  #narrowUsed = chunkUnits;
  #wideUsed = chunkUnits;

  get size(): number {
    return this.#size;
  }

  /**
   * The number remembered with `id`, or undefined after remembering `value` with it (the first to name an id keeps
   * it). `value` is an integer from 0 to 2^32 - 1; `id` at most `chunkUnits` UTF-16 units long.
   */
  getOrAdd(id: string, value: number): number | undefined {
    const hash = hashOf(id);
    const mask = this.#slots.length - 1;
    for (let slot = hash & mask; ; slot = (slot + 1) & mask) {
      const entry = this.#slots[slot]! - 1;
      if (entry < 0) break;
      if (this.#hashes[entry] === hash && this.#equals(entry, id)) return this.#values[entry];
    }
    this.#add(id, hash, value);
    return undefined;
  }

  #equals(entry: number, id: string): boolean {
    const length = this.#lengths[entry]!;
    if ((length < 0 ? -length : length) !== id.length) return false;
    const start = this.#starts[entry]!;
    const chunk = Math.floor(start / chunkUnits);
    const offset = start - chunk * chunkUnits;
    const units = length < 0 ? this.#wide[chunk]! : this.#narrow[chunk]!;
    for (let i = 0; i < id.length; i++) if (units[offset + i] !== id.charCodeAt(i)) return false;
    return true;
  }

  /**
   * Forgets every id and gives the arrays' memory back at once (about 55 MiB at 930,000 ids) rather than at V8's
   * next full collection, which on a request thread that has gone quiet after a large upload came minutes later.
   * The set is empty and usable afterwards.
   */
  clear(): void {
    for (const array of [this.#slots, this.#hashes, this.#starts, this.#lengths, this.#values, ...this.#narrow, ...this.#wide]) releaseBuffer(array);
    this.#slots = new Uint32Array(initialEntries * 2);
    this.#hashes = new Uint32Array(initialEntries);
    this.#starts = new Float64Array(initialEntries);
    this.#lengths = new Int32Array(initialEntries);
    this.#values = new Uint32Array(initialEntries);
    this.#size = 0;
    this.#narrow.length = 0;
    this.#wide.length = 0;
    this.#narrowUsed = chunkUnits;
    this.#wideUsed = chunkUnits;
  }

  #add(id: string, hash: number, value: number): void {
    if (this.#size === this.#hashes.length) this.#growEntries();
    let narrow = true;
    for (let i = 0; i < id.length && narrow; i++) narrow = id.charCodeAt(i) < 256;
    const entry = this.#size++;
    this.#hashes[entry] = hash;
    this.#values[entry] = value;
    this.#lengths[entry] = narrow ? id.length : -id.length;
    this.#starts[entry] = narrow ? this.#store(this.#narrow, id, true) : this.#store(this.#wide, id, false);
    if (this.#size * 2 > this.#slots.length) this.#growSlots();
    else this.#place(entry);
  }

  /** Copies the id's units into the last chunk of `chunks` (a new one when it does not fit); returns where. */
  #store(chunks: (Uint8Array | Uint16Array)[], id: string, narrow: boolean): number {
    let used = narrow ? this.#narrowUsed : this.#wideUsed;
    if (used + id.length > chunkUnits) {
      chunks.push(narrow ? new Uint8Array(chunkUnits) : new Uint16Array(chunkUnits));
      used = 0;
    }
    const units = chunks[chunks.length - 1]!;
    for (let i = 0; i < id.length; i++) units[used + i] = id.charCodeAt(i);
    const start = (chunks.length - 1) * chunkUnits + used;
    if (narrow) this.#narrowUsed = used + id.length;
    else this.#wideUsed = used + id.length;
    return start;
  }

  #place(entry: number): void {
    const mask = this.#slots.length - 1;
    let slot = this.#hashes[entry]! & mask;
    while (this.#slots[slot] !== 0) slot = (slot + 1) & mask;
    this.#slots[slot] = entry + 1;
  }

  #growEntries(): void {
    const capacity = this.#hashes.length * 2;
    this.#hashes = grown(this.#hashes, new Uint32Array(capacity));
    this.#starts = grown(this.#starts, new Float64Array(capacity));
    this.#lengths = grown(this.#lengths, new Int32Array(capacity));
    this.#values = grown(this.#values, new Uint32Array(capacity));
  }

  #growSlots(): void {
    const outgrown = this.#slots;
    this.#slots = new Uint32Array(outgrown.length * 2);
    releaseBuffer(outgrown);
    for (let entry = 0; entry < this.#size; entry++) this.#place(entry);
  }
}

/** `to` holding `from`'s entries; `from`'s memory is given back at once (the old arrays are 14 MiB at 500,000 ids). */
function grown<T extends Uint32Array | Float64Array | Int32Array>(from: T, to: T): T {
  to.set(from);
  releaseBuffer(from);
  return to;
}

/** FNV-1a over the UTF-16 units, then a final mix so that the low bits (the slot) depend on every unit. */
function hashOf(id: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) hash = Math.imul(hash ^ id.charCodeAt(i), 0x01000193);
  hash ^= hash >>> 16;
  hash = Math.imul(hash, 0x85ebca6b);
  hash ^= hash >>> 13;
  return hash >>> 0;
}
