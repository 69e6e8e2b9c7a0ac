// Shared directory fsyncs (group commit). An upload is acknowledged only after an fsync of its
// directory that started after its rename finished. Uploads that finish while such an fsync is
// already running cannot count on it (it may have started before their rename), but they can
// all share the next one: per directory at most one fsync runs and at most one waits, however
// many uploads ask meanwhile. On a directory that takes many concurrent small writes (one
// BorgStore namespace) this turns one fsync per upload into one per round.

/** Makes one directory durable (the real fsync); rejects when it fails. */
export type SyncOneDir = (dirPath: string) => Promise<void>;

interface DirRound {
  /** The fsync running now. */
  running: Promise<void>;
  /** The fsync that starts when `running` has settled, shared by everyone who asked since. */
  queued: Promise<void> | null;
}

export class DirSyncs {
  readonly #syncOne: SyncOneDir;
  readonly #rounds = new Map<string, DirRound>();

  constructor(syncOne: SyncOneDir) {
    this.#syncOne = syncOne;
  }

  /**
   * Resolves once an fsync of `dirPath` that started after this call has succeeded; rejects with
   * that fsync's error.
   */
  sync(dirPath: string): Promise<void> {
    const round = this.#rounds.get(dirPath);
    if (round === undefined) return this.#start(dirPath);
    // a failed round does not stop the next one: its callers get their own attempt
    round.queued ??= round.running.catch(() => {}).then(() => this.#start(dirPath));
    return round.queued;
  }

  /** Directories with an fsync running (for tests: nothing is left behind). */
  get busy(): number {
    return this.#rounds.size;
  }

  #start(dirPath: string): Promise<void> {
    const round: DirRound = { running: this.#syncOne(dirPath), queued: null };
    this.#rounds.set(dirPath, round);
    const settle = () => {
      if (this.#rounds.get(dirPath) === round && round.queued === null) {
        this.#rounds.delete(dirPath);
      }
    };
    round.running.then(settle, settle);
    return round.running;
  }
}
