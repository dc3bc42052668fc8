// One connection to one Parse Server, shared by the Parse adapters: the `parse` SDK (node entry) for objects, queries,
// schemas and roles, and plain `fetch` for what the SDK does awkwardly: the `/batch` endpoint (per-operation results
// instead of one aggregate error), raw file upload and streamed download.
//
// The SDK is a process-wide singleton (`Parse.initialize` sets global state), so a process talks to exactly one Parse
// Server: `connectParse` returns the existing connection for the same settings and refuses different ones.
// Every call uses the master key; the ACLs the adapters write protect the data from direct access by Parse users.
import Parse from 'parse/node';

export interface ParseSettings {
  serverURL: string;
  appId: string;
  masterKey: string;
  javascriptKey?: string | undefined;
}

/** One sub-request of `/batch`: `path` is relative to the server URL, e.g. `/classes/Memory`. */
export interface BatchOperation {
  method: 'POST' | 'PUT' | 'DELETE';
  path: string;
  body?: Record<string, unknown>;
}

export type BatchOperationResult =
  | { success: Record<string, unknown>; error?: undefined }
  | { error: { code: number; error: string }; success?: undefined };

/** Parse's limit on sub-requests in one `/batch` call (the SDK's default batch size is 20). */
export const maxBatchOperations = 50;

/** Error codes the adapters act on (the SDK's `Parse.Error` constants, named here for readability). */
export const ParseErrorCode = {
  objectNotFound: 101,
  duplicateValue: 137,
} as const;

export interface ParseConnection {
  readonly settings: ParseSettings;
  /** The initialised SDK. Pass `masterKey` options (`useMasterKey`) on every call. */
  readonly Parse: typeof Parse;
  /** A REST call with the master key; throws `Parse.Error` for a Parse error answer. */
  request<T>(method: string, path: string, body?: unknown): Promise<T>;
  /** Runs up to 50 operations in one `/batch` call (not a transaction) and returns one result per operation. */
  batch(operations: BatchOperation[]): Promise<BatchOperationResult[]>;
  /** Uploads bytes as a Parse file; returns the name Parse gave it (it prefixes a random token). */
  uploadFile(name: string, body: Uint8Array, contentType: string): Promise<{ name: string; url: string }>;
  /** Reads a Parse file as a stream; `undefined` when it does not exist. */
  downloadFile(name: string): Promise<ReadableStream<Uint8Array> | undefined>;
  deleteFile(name: string): Promise<void>;
}

export const useMasterKey = { useMasterKey: true } as const;

let current: ParseConnection | undefined;

export function connectParse(settings: ParseSettings): ParseConnection {
  if (current) {
    const same = ['serverURL', 'appId', 'masterKey'].every(
      (name) => current!.settings[name as keyof ParseSettings] === settings[name as keyof ParseSettings],
    );
    if (same) return current;
    throw new Error(
      `this process already uses Parse Server ${current.settings.serverURL} (app ${current.settings.appId}); ` +
        'the Parse SDK is a process-wide singleton, so one process talks to one Parse Server',
    );
  }
  // The node entry's `initialize` takes the master key; its type lives on the default export's interface.
  const sdk = Parse as unknown as { initialize(appId: string, javascriptKey: string, masterKey: string): void; serverURL: string };
  sdk.initialize(settings.appId, settings.javascriptKey ?? 'unused', settings.masterKey);
  sdk.serverURL = settings.serverURL;
  current = new RestConnection({ ...settings, serverURL: settings.serverURL.replace(/\/+$/, '') });
  return current;
}

/** Forgets the connection, so a test process can connect to a new server after stopping the old one. */
export function disconnectParse(): void {
  current = undefined;
}

class RestConnection implements ParseConnection {
  readonly settings: ParseSettings;
  readonly Parse = Parse;

  constructor(settings: ParseSettings) {
    this.settings = settings;
  }

  #headers(contentType = 'application/json'): Record<string, string> {
    return {
      'X-Parse-Application-Id': this.settings.appId,
      'X-Parse-Master-Key': this.settings.masterKey,
      'Content-Type': contentType,
    };
  }

  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const response = await fetch(this.settings.serverURL + path, {
      method,
      headers: this.#headers(),
      body: body === undefined ? null : JSON.stringify(body),
    });
    return (await parseAnswer(response)) as T;
  }

  async batch(operations: BatchOperation[]): Promise<BatchOperationResult[]> {
    if (operations.length === 0) return [];
    if (operations.length > maxBatchOperations) {
      throw new Error(`a Parse batch takes at most ${maxBatchOperations} operations, got ${operations.length}`);
    }
    const mount = new URL(this.settings.serverURL).pathname.replace(/\/+$/, '');
    const requests = operations.map((operation) => ({ ...operation, path: mount + operation.path }));
    const results = await this.request<BatchOperationResult[]>('POST', '/batch', { requests });
    if (!Array.isArray(results) || results.length !== operations.length) {
      throw new Error(`Parse /batch answered ${Array.isArray(results) ? results.length : 'no'} results for ${operations.length} operations`);
    }
    return results;
  }

  async uploadFile(name: string, body: Uint8Array, contentType: string): Promise<{ name: string; url: string }> {
    const response = await fetch(`${this.settings.serverURL}/files/${encodeURIComponent(name)}`, {
      method: 'POST',
      headers: this.#headers(contentType),
      body: body as Uint8Array<ArrayBuffer>,
    });
    return (await parseAnswer(response)) as { name: string; url: string };
  }

  async downloadFile(name: string): Promise<ReadableStream<Uint8Array> | undefined> {
    const response = await fetch(`${this.settings.serverURL}/files/${this.settings.appId}/${encodeURIComponent(name)}`, {
      headers: this.#headers(),
    });
    if (response.status === 404) {
      await response.body?.cancel();
      return undefined;
    }
    if (!response.ok || !response.body) await parseAnswer(response);
    return response.body!;
  }

  async deleteFile(name: string): Promise<void> {
    const response = await fetch(`${this.settings.serverURL}/files/${encodeURIComponent(name)}`, {
      method: 'DELETE',
      headers: this.#headers(),
    });
    if (response.status === 404) {
      await response.body?.cancel();
      return;
    }
    await parseAnswer(response);
  }
}

async function parseAnswer(response: Response): Promise<unknown> {
  const text = await response.text();
  let value: unknown;
  try {
    value = text ? JSON.parse(text) : {};
  } catch {
    throw new Parse.Error(Parse.Error.INTERNAL_SERVER_ERROR, `Parse answered ${response.status} with a body that is not JSON: ${text.slice(0, 200)}`);
  }
  if (!response.ok) {
    const answer = value as { code?: number; error?: string };
    throw new Parse.Error(answer.code ?? Parse.Error.INTERNAL_SERVER_ERROR, answer.error ?? `Parse answered ${response.status}`);
  }
  return value;
}

/** True for a Parse error with this code (SDK errors and those `request` throws alike). */
export function isParseError(error: unknown, code: number): boolean {
  return error instanceof Parse.Error && error.code === code;
}
