// Who may read and write the objects the Parse adapters store: the submitting user and the organization's role,
// nobody else (no public access). The service itself uses the master key, which ACLs do not restrict.
//
// Identity: a tenant's `user` (from the API key) is taken to be the Parse `_User` objectId; the ACL names it directly,
// so no lookup is needed. A value that Parse would read as something else ("*", "role:…") is not granted anything.
// The organization maps to the role `org-<organization>`; an organization name that Parse does not allow in a role name
// maps to `org_sha256-<hex>` instead. Role membership is managed by whoever administers the Parse users.
import { createHash } from 'node:crypto';
import type { Tenant } from '../../domain/batch.ts';
import { isParseError, ParseErrorCode, useMasterKey, type ParseConnection } from './connection.ts';

export type AclJson = Record<string, { read?: boolean; write?: boolean }>;

const roleNamePattern = /^[0-9A-Za-z_-]{1,100}$/;

export function organizationRoleName(organization: string): string {
  return roleNamePattern.test(organization)
    ? `org-${organization}`
    : `org_sha256-${createHash('sha256').update(organization).digest('hex').slice(0, 40)}`;
}

function grantableUser(user: string): boolean {
  return user.length > 0 && user !== '*' && !user.includes(':');
}

/** Read and write for the user (when known) and the organization's role; nothing public. */
export function tenantAcl(tenant: Pick<Tenant, 'organization'> & { user?: string | undefined }): AclJson {
  const acl: AclJson = { [`role:${organizationRoleName(tenant.organization)}`]: { read: true, write: true } };
  if (tenant.user && grantableUser(tenant.user)) acl[tenant.user] = { read: true, write: true };
  return acl;
}

/** Creates each organization's role once per process (and tolerates another process creating it first). */
export class OrganizationRoles {
  readonly #connection: ParseConnection;
  readonly #ensured = new Map<string, Promise<boolean>>();

  constructor(connection: ParseConnection) {
    this.#connection = connection;
  }

  /** Resolves to true when this call created the role. */
  ensure(organization: string): Promise<boolean> {
    let pending = this.#ensured.get(organization);
    if (!pending) {
      pending = this.#create(organizationRoleName(organization));
      this.#ensured.set(organization, pending);
      pending.catch(() => this.#ensured.delete(organization));
    }
    return pending;
  }

  async #create(name: string): Promise<boolean> {
    const { Parse } = this.#connection;
    const existing = await new Parse.Query(Parse.Role).equalTo('name', name).first(useMasterKey);
    if (existing) return false;
    const acl = new Parse.ACL();
    acl.setRoleReadAccess(name, true);
    try {
      await new Parse.Role(name, acl).save(null, useMasterKey);
      return true;
    } catch (error) {
      if (isParseError(error, ParseErrorCode.duplicateValue)) return false;
      throw error;
    }
  }
}
