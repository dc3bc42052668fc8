// The Parse classes the adapters use: their fields, indexes, unique keys and class-level permissions.
// `migrateParse` creates them from these definitions; the adapters take the class names from here.

export const parseClasses = {
  batch: 'BatchMemoryRequest',
  version: 'BatchVersion',
  segment: 'BatchSegment',
  redrive: 'BatchRedrive',
  itemError: 'BatchItemError',
  payloadFile: 'BatchPayloadFile',
  memory: 'Memory',
  memoryWrite: 'MemoryWrite',
} as const;

export type ParseFieldType = 'String' | 'Number' | 'Boolean' | 'Date' | 'Object' | 'Array' | 'File';

export interface ClassDefinition {
  className: string;
  fields: Record<string, ParseFieldType>;
  /** Plain indexes, created through the Schema API (ascending; Postgres scans them backwards too). */
  indexes: Record<string, Record<string, 1>>;
  /**
   * Unique keys. Each is what makes an operation idempotent or a compare-and-set exclusive, so `migrateParse`
   * proves every one of them by trying to store a duplicate. The Schema API cannot create unique indexes.
   */
  unique: string[][];
  /** `readable`: signed-in users may get/find/count (their ACLs decide which objects); writes need the master key. */
  access: 'readable' | 'master-only';
  /** Fields never shown to a non-master reader. */
  protectedFields?: string[];
}

const tenantFields = {
  organization: 'String',
  namespace: 'String',
  user: 'String',
  workspace: 'String',
} as const satisfies Record<string, ParseFieldType>;

export const classDefinitions: ClassDefinition[] = [
  {
    className: parseClasses.batch,
    fields: {
      batchId: 'String',
      clientBatchId: 'String',
      requestId: 'String',
      ...tenantFields,
      status: 'String',
      version: 'Number',
      submittedAt: 'Date',
      startedAt: 'Date',
      completedAt: 'Date',
      totalMemories: 'Number',
      processedCount: 'Number',
      successCount: 'Number',
      failCount: 'Number',
      // Projections of the ledger's write outcomes; absent on batches stored before the ledger kept them.
      createdCount: 'Number',
      updatedCount: 'Number',
      unchangedCount: 'Number',
      payloadCodec: 'String',
      payloadPrefix: 'String',
      segmentCount: 'Number',
      rawBytes: 'Number',
      storedBytes: 'Number',
      workflowId: 'String',
      webhookUrl: 'String',
      webhookSecret: 'String',
      webhookSent: 'Boolean',
      webhookAttempts: 'Number',
      webhookLastError: 'String',
      webhookGaveUp: 'Boolean',
      failureReason: 'String',
      errors: 'Array',
      payloadExpiredAt: 'Date',
      memoryDefaults: 'Object',
      bodySha256: 'String',
      completionWindow: 'String',
      expiresAt: 'Date',
      batchMetadata: 'Object',
      onExisting: 'String',
      failureLimits: 'Object',
      invalidItems: 'String',
      upload: 'Object',
      redrives: 'Number',
    },
    indexes: {
      status_createdAt: { status: 1, createdAt: 1 },
      organization_submittedAt: { organization: 1, submittedAt: 1 },
      status_submittedAt: { status: 1, submittedAt: 1 },
      status_completedAt: { status: 1, completedAt: 1 },
      payloadPrefix: { payloadPrefix: 1 },
    },
    unique: [['batchId']],
    access: 'readable',
    protectedFields: ['webhookSecret'],
  },
  {
    // One row per committed update: the unique (batchId, version) makes `update` a compare-and-set.
    className: parseClasses.version,
    fields: { batchId: 'String', version: 'Number', state: 'Object' },
    indexes: {},
    unique: [['batchId', 'version']],
    access: 'master-only',
  },
  {
    // The progress ledger: one row per recorded segment; counts are the sums over these rows. `created`, `updated`
    // and `unchanged` split `succeeded` by write outcome (absent on rows of an earlier version: read as 0).
    className: parseClasses.segment,
    fields: {
      batchId: 'String', segment: 'Number', succeeded: 'Number', failed: 'Number',
      created: 'Number', updated: 'Number', unchanged: 'Number', workerId: 'String', recordedAt: 'Date',
    },
    indexes: {},
    unique: [['batchId', 'segment']],
    access: 'master-only',
  },
  {
    // A redrive's ledger: one row per (redrive, segment); `recovered` items moved from failed to succeeded, split by
    // write outcome in `created`, `updated`, `unchanged`.
    className: parseClasses.redrive,
    fields: {
      batchId: 'String', redrive: 'Number', segment: 'Number', recovered: 'Number', recoveredIndexes: 'Array',
      created: 'Number', updated: 'Number', unchanged: 'Number', failedAgain: 'Number', workerId: 'String', recordedAt: 'Date',
    },
    indexes: {},
    unique: [['batchId', 'redrive', 'segment']],
    access: 'master-only',
  },
  {
    className: parseClasses.itemError,
    fields: { batchId: 'String', index: 'Number', segment: 'Number', externalId: 'String', message: 'String' },
    indexes: {},
    unique: [['batchId', 'index']],
    access: 'readable',
  },
  {
    className: parseClasses.payloadFile,
    fields: {
      key: 'String',
      organization: 'String',
      file: 'File',
      sha256: 'String',
      size: 'Number',
      contentType: 'String',
      contentEncoding: 'String',
    },
    indexes: {},
    unique: [['key']],
    access: 'readable',
  },
  {
    className: parseClasses.memory,
    fields: {
      memoryId: 'String',
      batchId: 'String',
      index: 'Number',
      content: 'String',
      type: 'String',
      metadata: 'Object',
      externalId: 'String',
      // The Papr memory fields (context, relationships_json, external_user_id, ...), as one object.
      attributes: 'Object',
      contentHash: 'String',
      // Upsert by external id: what the stored value is (memoryFingerprint), how often it was replaced, and the
      // batch item (`<batch>:<index>`) that wrote it last, so a retried write knows it was its own.
      fingerprint: 'String',
      version: 'Number',
      writtenBy: 'String',
      ...tenantFields,
    },
    indexes: {},
    // (organization, namespace, externalId): one memory per external id and tenant. Postgres lets rows without an
    // external id (NULL) repeat.
    unique: [['memoryId'], ['batchId', 'index'], ['organization', 'namespace', 'externalId']],
    access: 'readable',
  },
  {
    // One row per batch item stored: the memory it wrote and how (created, updated, unchanged).
    className: parseClasses.memoryWrite,
    fields: { batchId: 'String', index: 'Number', memoryId: 'String', outcome: 'String' },
    indexes: {},
    unique: [['batchId', 'index']],
    access: 'master-only',
  },
];

/** The class-level permissions for an access level, in the Schema API's format. */
export function classLevelPermissions(definition: ClassDefinition): Record<string, unknown> {
  const read = definition.access === 'readable' ? { requiresAuthentication: true } : {};
  return {
    get: read,
    find: read,
    count: read,
    create: {},
    update: {},
    delete: {},
    addField: {},
    protectedFields: definition.protectedFields ? { '*': definition.protectedFields } : {},
  };
}

/** The name Parse Server's Postgres adapter gives a unique index (`<class>_unique_<sorted fields>`). */
export function uniqueIndexName(className: string, fieldNames: string[]): string {
  return `${className}_unique_${[...fieldNames].sort().join('_')}`;
}
