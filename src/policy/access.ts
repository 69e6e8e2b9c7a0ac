// Who may do what where: turns (user, repository, protocol) into a permission map and the quotas
// that apply, or a refusal. The flag policy implements rest-server's --append-only and
// --private-repos; grants from a config file plug in behind the same interface.

import type { QuotaTracker } from "./quota.ts";
import { BORG_MODES, type PermissionMap, RESTIC_APPEND_ONLY } from "./permissions.ts";

export type Protocol = "restic" | "borg";

export interface RepoAccess {
  /** Permission letters by key prefix inside the repository; null allows everything. */
  permissions: PermissionMap;
  /** Quotas beyond the global one (per user, per repository), all enforced together. */
  quotas?: QuotaTracker[];
}

export interface AccessPolicy {
  /** The access `user` has to the repository at `repo` (path segments), or null for none. */
  resolve(user: string, repo: string[], protocol: Protocol): RepoAccess | null;
}

export interface FlagPolicyOptions {
  appendOnly: boolean;
  privateRepos: boolean;
  /** --private-repos applies only when requests are authenticated. */
  authEnabled: boolean;
}

/** What --append-only means per protocol: restic's delete-only-locks, borg's no-delete mode. */
export const APPEND_ONLY: Record<Protocol, PermissionMap> = {
  restic: RESTIC_APPEND_ONLY,
  borg: BORG_MODES["no-delete"],
};

/** rest-server's flags: append-only for everyone, private repositories per user. */
export function flagPolicy(options: FlagPolicyOptions): AccessPolicy {
  const access: Record<Protocol, RepoAccess> = {
    restic: { permissions: options.appendOnly ? APPEND_ONLY.restic : null },
    borg: { permissions: options.appendOnly ? APPEND_ONLY.borg : null },
  };
  return {
    resolve(user, repo, protocol) {
      if (options.privateRepos && options.authEnabled && (repo.length === 0 || repo[0] !== user)) {
        return null;
      }
      return access[protocol];
    },
  };
}
