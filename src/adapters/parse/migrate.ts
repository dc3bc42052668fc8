// `batchmem migrate` for Parse: creates the classes of ./schema.ts with their fields, indexes, unique keys and
// class-level permissions, and the organizations' roles. Idempotent: it compares with what exists, changes only what
// is missing, prints each change, and verifies the result, unique keys included, by trying to store duplicates.
//
// Unique indexes: Parse's Schema API creates plain indexes only. Parse Server's storage adapter can create unique ones
// (`ensureUniqueness`), but only in its own process; from outside, they are created in the database directly. So the
// caller passes `uniqueIndexes`: in-process, the adapter's `ensureUniqueness`; from the CLI, `postgresUniqueIndexes`
// with the database URL. Without it, migrate reports the missing unique indexes with the SQL to create them.
import { randomBytes } from 'node:crypto';
import { OrganizationRoles } from './acl.ts';
import { isParseError, ParseErrorCode, type ParseConnection } from './connection.ts';
import { type ClassDefinition, classDefinitions, classLevelPermissions, uniqueIndexName } from './schema.ts';

/** Creates a unique index on `fieldNames` of `className` if it does not exist. */
export type UniqueIndexMaker = (className: string, fieldNames: string[]) => Promise<void>;

export interface MigrationOptions {
  /** Organizations whose roles (`org-<organization>`) to create. */
  organizations?: string[];
  uniqueIndexes?: UniqueIndexMaker | undefined;
  /** Where progress lines go (default: console.log). */
  log?: (line: string) => void;
}

export interface MigrationReport {
  /** What this run created or changed; empty when everything was in place. */
  changes: string[];
  /** What is still wrong after the run; empty when the schema verified. */
  problems: string[];
}

interface RemoteSchema {
  fields?: Record<string, { type: string }>;
  indexes?: Record<string, unknown>;
  classLevelPermissions?: Record<string, unknown>;
}

export async function migrateParse(connection: ParseConnection, options: MigrationOptions = {}): Promise<MigrationReport> {
  const log = options.log ?? ((line: string) => console.log(line));
  const changes: string[] = [];
  const change = (line: string) => {
    changes.push(line);
    log(`created ${line}`);
  };

  for (const definition of classDefinitions) await migrateClass(connection, definition, change);
  for (const definition of classDefinitions) {
    for (const fields of definition.unique) {
      if (await isUnique(connection, definition.className, fields)) continue;
      if (!options.uniqueIndexes) continue; // reported by the verification below
      await options.uniqueIndexes(definition.className, [...fields]);
      change(`unique index ${uniqueIndexName(definition.className, fields)}`);
    }
  }
  const roles = new OrganizationRoles(connection);
  for (const organization of options.organizations ?? []) {
    if (await roles.ensure(organization)) change(`role for organization ${organization}`);
  }

  const problems = await verify(connection);
  if (changes.length === 0) log('Parse schema: nothing to change');
  if (problems.length === 0) log(`Parse schema verified: ${classDefinitions.map((d) => d.className).join(', ')}`);
  for (const problem of problems) log(`PROBLEM: ${problem}`);
  return { changes, problems };
}

/**
 * Creates unique indexes directly in Parse Server's PostgreSQL database, under the names Parse Server itself uses, so
 * that a violation reaches clients as Parse's "duplicate value" (137). Only migrate connects to the database.
 */
export function postgresUniqueIndexes(databaseURI: string): UniqueIndexMaker {
  return async (className, fieldNames) => {
    const { default: pg } = await import('pg');
    const client = new pg.Client({ connectionString: databaseURI });
    await client.connect();
    try {
      const quote = (name: string) => `"${name.replaceAll('"', '""')}"`;
      const columns = [...fieldNames].sort().map(quote).join(', ');
      await client.query(`CREATE UNIQUE INDEX IF NOT EXISTS ${quote(uniqueIndexName(className, fieldNames))} ON ${quote(className)} (${columns})`);
    } finally {
      await client.end();
    }
  };
}

async function fetchSchema(connection: ParseConnection, className: string): Promise<RemoteSchema | undefined> {
  try {
    return (await new connection.Parse.Schema(className).get()) as unknown as RemoteSchema;
  } catch (error) {
    if (isParseError(error, connection.Parse.Error.INVALID_CLASS_NAME)) return undefined;
    throw error;
  }
}

async function migrateClass(
  connection: ParseConnection,
  definition: ClassDefinition,
  change: (line: string) => void,
): Promise<void> {
  const { className } = definition;
  const existing = await fetchSchema(connection, className);
  const schema = new connection.Parse.Schema(className);
  const missingFields = Object.entries(definition.fields).filter(([name]) => !existing?.fields?.[name]);
  const missingIndexes = Object.entries(definition.indexes).filter(([name]) => !existing?.indexes?.[name]);
  const clp = classLevelPermissions(definition);
  const clpChanged = !existing || !sameClp(existing.classLevelPermissions, clp);
  if (existing && missingFields.length === 0 && missingIndexes.length === 0 && !clpChanged) return;

  // Fields first: an index may only name fields that exist.
  for (const [name, type] of missingFields) schema.addField(name, type);
  schema.setCLP(clp as Parameters<typeof schema.setCLP>[0]);
  if (existing) await schema.update();
  else await schema.save();
  if (!existing) change(`class ${className} with fields ${missingFields.map(([name]) => name).join(', ')}`);
  else if (missingFields.length > 0) change(`fields ${missingFields.map(([name]) => name).join(', ')} on ${className}`);
  if (existing && clpChanged) change(`class-level permissions of ${className}`);

  if (missingIndexes.length > 0) {
    const indexes = new connection.Parse.Schema(className);
    for (const [name, fields] of missingIndexes) indexes.addIndex(name, fields);
    await indexes.update();
    for (const [name, fields] of missingIndexes) change(`index ${name} (${Object.keys(fields).join(', ')}) on ${className}`);
  }
}

function sameClp(actual: Record<string, unknown> | undefined, wanted: Record<string, unknown>): boolean {
  if (!actual) return false;
  return Object.entries(wanted).every(([operation, value]) => {
    const have = actual[operation] ?? {};
    if (operation === 'protectedFields') return JSON.stringify(normalizeProtected(have)) === JSON.stringify(normalizeProtected(value));
    return JSON.stringify(have) === JSON.stringify(value);
  });
}

function normalizeProtected(value: unknown): Record<string, string[]> {
  const entries = Object.entries((value ?? {}) as Record<string, string[]>).filter(([, fields]) => fields.length > 0);
  return Object.fromEntries(entries.map(([who, fields]) => [who, [...fields].sort()]));
}

/** True when the class refuses a second object with the same values of `fields` (proved by trying it). */
async function isUnique(connection: ParseConnection, className: string, fields: string[]): Promise<boolean> {
  const probe: Record<string, unknown> = { ACL: {} };
  const token = `__batchmem_migrate_probe_${randomBytes(6).toString('hex')}`;
  for (const field of fields) {
    const type = classDefinitions.find((d) => d.className === className)?.fields[field];
    probe[field] = type === 'Number' ? -1 - randomBytes(3).readUIntBE(0, 3) : token;
  }
  const created: string[] = [];
  try {
    for (let attempt = 0; attempt < 2; attempt += 1) {
      try {
        const answer = await connection.request<{ objectId: string }>('POST', `/classes/${className}`, probe);
        created.push(answer.objectId);
      } catch (error) {
        if (isParseError(error, ParseErrorCode.duplicateValue)) return true;
        throw error;
      }
    }
    return false;
  } finally {
    for (const objectId of created) {
      await connection.request('DELETE', `/classes/${className}/${objectId}`).catch(() => undefined);
    }
  }
}

async function verify(connection: ParseConnection): Promise<string[]> {
  const problems: string[] = [];
  for (const definition of classDefinitions) {
    const { className } = definition;
    const schema = await fetchSchema(connection, className);
    if (!schema) {
      problems.push(`class ${className} does not exist`);
      continue;
    }
    for (const [name, type] of Object.entries(definition.fields)) {
      const actual = schema.fields?.[name]?.type;
      if (actual !== type) problems.push(`${className}.${name} is ${actual ?? 'missing'}, expected ${type}`);
    }
    for (const name of Object.keys(definition.indexes)) {
      if (!schema.indexes?.[name]) problems.push(`index ${name} on ${className} is missing`);
    }
    if (!sameClp(schema.classLevelPermissions, classLevelPermissions(definition))) {
      problems.push(`class-level permissions of ${className} differ: ${JSON.stringify(schema.classLevelPermissions)}`);
    }
    for (const fields of definition.unique) {
      if (await isUnique(connection, className, fields)) continue;
      const name = uniqueIndexName(className, fields);
      const columns = [...fields].sort().map((f) => `"${f}"`).join(', ');
      problems.push(
        `${className} (${fields.join(', ')}) is not unique; create the index with PARSE_DATABASE_URI set, or run: ` +
          `CREATE UNIQUE INDEX IF NOT EXISTS "${name}" ON "${className}" (${columns});`,
      );
    }
  }
  return problems;
}
