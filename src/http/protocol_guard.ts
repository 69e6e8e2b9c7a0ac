// Keeps restic repositories and borg stores apart on disk for `stowage serve`, which serves both
// protocols from one data directory. Loaded with every handler (the restic side asks it too),
// while the borg router itself is loaded on the first BorgStore request.

import { StowageError } from "../errors.ts";
import type { Provider } from "../storage/provider.ts";

export type StoreProtocol = "restic" | "borg" | "unknown";

const RESTIC_NAMES = new Set(["data", "index", "keys", "locks", "snapshots", "config"]);
const RESTIC_TYPES = ["data", "index", "keys", "locks", "snapshots"];
const UNKNOWN_TTL_MS = 5_000;

/**
 * Keeps the two protocols apart on disk: a directory holding a restic repository is never served
 * as a borg store and the other way round, a borg store never lies inside or around a restic
 * repository, and no store lies inside another. Definite answers are remembered.
 */
export class ProtocolGuard {
  /** Definite answers forever; "unknown" reused for a few seconds for ancestors and children. */
  readonly #known = new Map<string, { protocol: StoreProtocol; until: number }>();

  constructor(private readonly provider: Provider) {}

  async #isDir(path: string): Promise<boolean> {
    return (await this.provider.stat(path))?.isDirectory === true;
  }

  /** restic: a `config` file next to its type directories, or all five type directories. */
  async protocolOf(dir: string, allowStale = false): Promise<StoreProtocol> {
    const cached = this.#known.get(dir);
    if (cached && (cached.protocol !== "unknown" || (allowStale && cached.until > Date.now()))) {
      return cached.protocol;
    }
    const at = (name: string) => (dir === "" ? name : `${dir}/${name}`);
    const config = await this.provider.stat(at("config"));
    let protocol: StoreProtocol = "unknown";
    if (config?.isDirectory) protocol = "borg";
    else if (await this.#isDir(at("packs")) || await this.#isDir(at("archives"))) protocol = "borg";
    else if (
      config !== null && (await this.#isDir(at("keys")) || await this.#isDir(at("snapshots")))
    ) {
      protocol = "restic";
    } else {
      let all = true;
      for (const type of RESTIC_TYPES) {
        if (!(await this.#isDir(at(type)))) {
          all = false;
          break;
        }
      }
      if (all) protocol = "restic";
    }
    if (this.#known.size > 10_000) this.#known.clear();
    this.#known.set(dir, {
      protocol,
      until: protocol === "unknown" ? Date.now() + UNKNOWN_TTL_MS : Infinity,
    });
    return protocol;
  }

  #conflict(message: string): StowageError {
    return new StowageError("Conflict", message);
  }

  /** Throws Conflict when `dir` cannot be used by `protocol`. */
  async require(dir: string, protocol: "restic" | "borg"): Promise<void> {
    const own = await this.protocolOf(dir);
    const describe = (p: StoreProtocol) => (p === "borg" ? "a borg store" : "a restic repository");
    if (own !== "unknown" && own !== protocol) throw this.#conflict(`/${dir}/ is ${describe(own)}`);
    const segments = dir === "" ? [] : dir.split("/");
    if (protocol === "borg" && RESTIC_NAMES.has(segments[0])) {
      throw this.#conflict(`/${segments[0]}/ is reserved for the restic repository at /`);
    }
    for (let i = 1; i < segments.length; i++) {
      const ancestor = segments.slice(0, i).join("/");
      const found = await this.protocolOf(ancestor, true);
      if (found === "borg" || (found === "restic" && protocol === "borg")) {
        throw this.#conflict(`/${dir}/ lies inside ${describe(found)} (/${ancestor}/)`);
      }
    }
    if (protocol === "borg" && own === "unknown" && dir !== "") {
      // A new store must not swallow restic repositories below it (destroy would remove them).
      try {
        for await (const child of this.provider.list(dir)) {
          if (
            child.isDirectory && await this.protocolOf(`${dir}/${child.name}`, true) === "restic"
          ) {
            throw this.#conflict(`/${dir}/ holds the restic repository /${dir}/${child.name}/`);
          }
        }
      } catch (error) {
        if (error instanceof StowageError && error.kind === "Conflict") throw error;
        // a missing directory holds nothing
      }
    }
  }

  /** Forgets a directory (after a destroy). */
  forget(dir: string): void {
    this.#known.delete(dir);
  }
}
