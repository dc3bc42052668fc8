// Who owns a batch and its memories: its own module so that batch.ts and memory.ts, which both name it, need not
// import each other.

/** Who a batch belongs to. The organization is the isolation boundary. */
export interface Tenant {
  organization: string;
  namespace: string;
  user: string;
  workspace: string;
}
