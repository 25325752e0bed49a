/**
 * Roles and permissions: the one table RBAC is checked against. A principal's permissions are the
 * union of its roles' permissions; `admin` has all of them. A principal may also be limited to
 * named models (`Principal.models`): then `inference:invoke` and the model-scoped reads apply only
 * to those models.
 */
import type { Principal } from '../inference/types.ts';

export const PERMISSIONS = [
  'models:read',
  'models:write',
  'inference:invoke',
  'metrics:read',
  'resources:read',
  'alerts:read',
  'alerts:write',
  'keys:manage',
  'users:manage',
  'audit:read',
  'workers:register',
  'workers:manage',
] as const;
export type Permission = (typeof PERMISSIONS)[number];

export const BUILT_IN_ROLES = ['admin', 'operator', 'developer', 'viewer', 'worker'] as const;
export type BuiltInRole = (typeof BUILT_IN_ROLES)[number];

export const ROLE_PERMISSIONS: Readonly<Record<BuiltInRole, readonly Permission[]>> = Object.freeze({
  admin: PERMISSIONS,
  operator: [
    'models:read',
    'models:write',
    'inference:invoke',
    'metrics:read',
    'resources:read',
    'alerts:read',
    'alerts:write',
    'workers:manage',
    'audit:read',
  ],
  developer: ['models:read', 'inference:invoke', 'metrics:read', 'resources:read', 'alerts:read'],
  viewer: ['models:read', 'metrics:read', 'resources:read', 'alerts:read'],
  worker: ['workers:register'],
});

/** Role name → permissions: the built-in roles plus custom roles from the config (`auth.roles`). */
export type RoleTable = ReadonlyMap<string, ReadonlySet<Permission>>;

export function roleTable(custom: Record<string, readonly Permission[]> = {}): RoleTable {
  const table = new Map<string, ReadonlySet<Permission>>();
  for (const [role, perms] of Object.entries(ROLE_PERMISSIONS)) table.set(role, new Set(perms));
  for (const [role, perms] of Object.entries(custom)) table.set(role, new Set(perms));
  return table;
}

const DEFAULT_TABLE = roleTable();
const cache = new WeakMap<Principal, { table: RoleTable; perms: ReadonlySet<Permission> }>();

/** The permissions a principal's roles grant (cached per principal object and role table). */
export function permissionsOf(principal: Principal, table: RoleTable = DEFAULT_TABLE): ReadonlySet<Permission> {
  const hit = cache.get(principal);
  if (hit && hit.table === table) return hit.perms;
  const perms = new Set<Permission>();
  for (const role of principal.roles) for (const p of table.get(role) ?? []) perms.add(p);
  cache.set(principal, { table, perms });
  return perms;
}

/** True when the principal may reach this model (no model list: every model). */
export function mayUseModel(principal: Principal, model: string): boolean {
  return principal.models === undefined || principal.models.includes(model);
}

/** True when the principal holds the permission and, when a model is named, may use that model. */
export function can(principal: Principal | undefined, permission: Permission, model?: string, table: RoleTable = DEFAULT_TABLE): boolean {
  if (!principal) return false;
  if (!permissionsOf(principal, table).has(permission)) return false;
  return model === undefined || mayUseModel(principal, model);
}
