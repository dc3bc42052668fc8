/**
 * What `batchmem migrate` asks of every store adapter (batch repository, payload store, memory sink).
 *
 * Guarantees an adapter must give:
 * - `prepare` creates what the store needs (tables, classes, indexes, a bucket) unless it exists, and is safe to run
 *   any number of times, also by several adapters sharing one backend.
 * - It returns one line for the operator when it has something to report (a bucket created or found), else undefined.
 * - It throws when the store cannot be made ready; the message says what is wrong.
 */
export interface Preparable {
  prepare(): Promise<string | undefined>;
}
