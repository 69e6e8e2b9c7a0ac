// Server logging: one line per message on stderr (stdout may carry a protocol). Lines are
// escaped so that client-controlled text cannot inject control characters into log files.

export interface Logger {
  info(line: string): void;
  error(line: string): void;
  debug(line: string): void;
  readonly debugEnabled: boolean;
}

// deno-lint-ignore no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f\\]/g;

/** Escapes control characters as \xNN and backslashes as \\ (borgstore's log escaping). */
export function escapeLogText(text: string): string {
  return text.replace(
    CONTROL,
    (c) => c === "\\" ? "\\\\" : `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`,
  );
}

const encoder = new TextEncoder();

function writeLine(line: string): void {
  const bytes = encoder.encode(line + "\n");
  let at = 0;
  while (at < bytes.byteLength) at += Deno.stderr.writeSync(bytes.subarray(at));
}

export function stderrLogger(options: { debug?: boolean } = {}): Logger {
  const debugEnabled = options.debug ?? false;
  return {
    debugEnabled,
    info: (line) => writeLine(line),
    error: (line) => writeLine(line),
    debug: (line) => {
      if (debugEnabled) writeLine(line);
    },
  };
}

/** A logger that keeps lines in memory (tests, embedding). */
export function memoryLogger(lines: string[] = []): Logger & { lines: string[] } {
  return {
    lines,
    debugEnabled: true,
    info: (line) => lines.push(line),
    error: (line) => lines.push(line),
    debug: (line) => lines.push(line),
  };
}
