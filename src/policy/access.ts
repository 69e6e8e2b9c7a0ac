// Who may do what where: turns (user, repository) into a permission map, or a refusal.
// The flag policy implements rest-server's --append-only and --private-repos; grants from a
// config file plug in behind the same interface.

import { type PermissionMap, RESTIC_APPEND_ONLY } from "./permissions.ts";

export interface RepoAccess {
  /** Permission letters by key prefix inside the repository; null allows everything. */
  permissions: PermissionMap;
}

export interface AccessPolicy {
  /** The access `user` has to the repository at `repo` (path segments), or null for none. */
  resolve(user: string, repo: string[]): RepoAccess | null;
}

export interface FlagPolicyOptions {
  appendOnly: boolean;
  privateRepos: boolean;
  /** --private-repos applies only when requests are authenticated. */
  authEnabled: boolean;
  /** The map --append-only stands for (default: restic's; borg stores use borg's no-delete). */
  appendOnlyMap?: PermissionMap;
}

/** rest-server's flags: append-only for everyone, private repositories per user. */
export function flagPolicy(options: FlagPolicyOptions): AccessPolicy {
  const appendOnlyMap = options.appendOnlyMap ?? RESTIC_APPEND_ONLY;
  const access: RepoAccess = { permissions: options.appendOnly ? appendOnlyMap : null };
  return {
    resolve(user, repo) {
      if (options.privateRepos && options.authEnabled && (repo.length === 0 || repo[0] !== user)) {
        return null;
      }
      return access;
    },
  };
}
