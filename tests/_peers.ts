// Shared test helper for tests that need an external program (htpasswd, openssl, restic, sshd,
// promtool, ...): such tests are ignored when the program is missing, unless
// STOWAGE_REQUIRE_PEERS=1 demands that they run (and then fail).

/** True if an executable file named `cmd` exists on PATH (or at `cmd` itself if it has a '/'). */
export function onPath(cmd: string): boolean {
  const candidates = cmd.includes("/")
    ? [cmd]
    : (Deno.env.get("PATH") ?? "").split(":").filter((dir) => dir !== "").map((dir) =>
      `${dir}/${cmd}`
    );
  return candidates.some((path) => {
    try {
      const info = Deno.statSync(path);
      return info.isFile && ((info.mode ?? 0o111) & 0o111) !== 0;
    } catch {
      return false;
    }
  });
}

/** For `ignore:`: true when `cmd` is missing and STOWAGE_REQUIRE_PEERS is not "1". */
export function peerMissing(cmd: string): boolean {
  return !onPath(cmd) && Deno.env.get("STOWAGE_REQUIRE_PEERS") !== "1";
}
