// The Parse classes, indexes, unique keys and roles that every Parse adapter relies on, prepared once per process
// however many of the three Parse adapters `batchmem migrate` asks (they share one schema, see ./schema.ts).
import type { ParseConnection } from './connection.ts';
import { type MigrationOptions, migrateParse } from './migrate.ts';

export class ParseSchemaSetup {
  readonly #connection: ParseConnection;
  readonly #options: () => MigrationOptions;
  #run: Promise<undefined> | undefined;

  /** `options` is read when preparation runs (it may load the configured API keys); by default no roles, no unique indexes. */
  constructor(connection: ParseConnection, options: () => MigrationOptions = () => ({})) {
    this.#connection = connection;
    this.#options = options;
  }

  /** Runs `migrateParse` on the first call; later calls share its outcome. Throws when the schema has problems. */
  prepare(): Promise<undefined> {
    this.#run ??= migrateParse(this.#connection, this.#options()).then((report) => {
      if (report.problems.length > 0) throw new Error(`the Parse schema has ${report.problems.length} problem(s), listed above`);
      return undefined;
    });
    return this.#run;
  }
}
