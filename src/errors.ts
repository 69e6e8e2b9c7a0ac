// Error values shared by every layer. Code below the protocols throws a StowageError with a kind;
// each protocol maps kinds to its own status codes in one table (protocol/*_status.ts).
// Messages are short and never contain server paths; `detail` is for the log only.

export type ErrorKind =
  | "NotFound" // item, object, directory or repository absent
  | "StoreMissing" // a borg store's base directory does not exist
  | "Exists" // no-replace commit found an existing item
  | "Conflict" // state forbids the operation (e.g. create on a non-empty store)
  | "Forbidden" // policy denies the operation
  | "Unauthorized" // authentication failed
  | "BadRequest" // malformed request, invalid name or parameter
  | "BadRange" // range cannot be satisfied
  | "HashMismatch" // content does not match the announced digest
  | "QuotaExceeded" // a quota or the disk is full
  | "TooLarge" // request larger than any limit allows
  | "NotDirectory" // a path component is a file
  | "IsDirectory" // an item operation hit a directory
  | "NotEmpty" // rmdir on a non-empty directory
  | "Truncated" // request body ended before its declared length
  | "Unavailable" // backing store temporarily unreachable
  | "Internal"; // anything else

export class StowageError extends Error {
  readonly kind: ErrorKind;
  /** Extra text for the server log only (may contain paths). */
  readonly detail?: string;

  constructor(kind: ErrorKind, message: string, options?: { detail?: string; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = "StowageError";
    this.kind = kind;
    this.detail = options?.detail;
  }
}

/** Converts anything thrown by Deno or Node APIs into a StowageError without leaking paths. */
export function toStowageError(error: unknown): StowageError {
  if (error instanceof StowageError) return error;
  const detail = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  if (error instanceof Deno.errors.NotFound) {
    return new StowageError("NotFound", "not found", { detail });
  }
  if (error instanceof Deno.errors.AlreadyExists) {
    return new StowageError("Exists", "already exists", { detail });
  }
  if (error instanceof Deno.errors.NotADirectory) {
    return new StowageError("NotDirectory", "not a directory", { detail });
  }
  if (error instanceof Deno.errors.IsADirectory) {
    return new StowageError("IsDirectory", "is a directory", { detail });
  }
  const code = (error as { code?: string })?.code;
  if (
    code === "ENOSPC" || code === "EDQUOT" ||
    /ENOSPC|EDQUOT|No space left|quota exceeded/i.test(detail)
  ) {
    return new StowageError("QuotaExceeded", "insufficient storage", { detail });
  }
  if (code === "ENOTEMPTY" || /ENOTEMPTY|Directory not empty/i.test(detail)) {
    return new StowageError("NotEmpty", "directory not empty", { detail });
  }
  if (code === "ENOTDIR" || /ENOTDIR|Not a directory/i.test(detail)) {
    return new StowageError("NotDirectory", "not a directory", { detail });
  }
  if (code === "EISDIR" || /EISDIR|Is a directory/i.test(detail)) {
    return new StowageError("IsDirectory", "is a directory", { detail });
  }
  return new StowageError("Internal", "internal error", { detail, cause: error });
}

/** A short reason for a failed file access, without the path (for one-line messages). */
export function fsErrorReason(error: unknown): string {
  if (error instanceof Deno.errors.NotFound) return "no such file or directory";
  if (error instanceof Deno.errors.PermissionDenied) return "permission denied";
  if (error instanceof Deno.errors.IsADirectory) return "is a directory";
  return error instanceof Error ? error.message : String(error);
}

/** A server cannot start with its configuration (the message is for the operator; exit 1). */
export class StartupError extends Error {
  override name = "StartupError";
}
