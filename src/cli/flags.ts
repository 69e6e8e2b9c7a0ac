// A small table-driven command-line parser in GNU long-option style (as Go's pflag, which
// rest-server uses): `--flag value`, `--flag=value`, `--bool`, `--bool=false`, short aliases,
// repeatable flags and `--`. Unknown flags and bad values are UsageErrors (exit status 2).
// The same tables render `--help` and the README flag reference, so they cannot drift.

export type FlagType = "string" | "boolean" | "integer" | "list";

export interface FlagSpec {
  name: string;
  type: FlagType;
  help: string;
  short?: string;
  /** Shown in help; the parser itself leaves absent flags undefined. */
  defaultText?: string;
  /** Placeholder for the value in help, e.g. "DIR". */
  value?: string;
  /** Flags that carry a secret: warn when given on the command line. */
  secret?: boolean;
}

export type FlagValue = string | boolean | number | string[];
export type FlagValues = Record<string, FlagValue | undefined>;

export class UsageError extends Error {
  override name = "UsageError";
}

export interface ParsedArgs {
  values: FlagValues;
  positionals: string[];
}

const TRUE_WORDS = new Set(["true", "1", "t", "yes"]);
const FALSE_WORDS = new Set(["false", "0", "f", "no"]);

function convert(spec: FlagSpec, raw: string): FlagValue {
  switch (spec.type) {
    case "boolean":
      if (TRUE_WORDS.has(raw.toLowerCase())) return true;
      if (FALSE_WORDS.has(raw.toLowerCase())) return false;
      throw new UsageError(`invalid value "${raw}" for --${spec.name}: expected true or false`);
    case "integer": {
      if (!/^-?\d+$/.test(raw) || !Number.isSafeInteger(Number(raw))) {
        throw new UsageError(`invalid value "${raw}" for --${spec.name}: expected an integer`);
      }
      return Number(raw);
    }
    default:
      return raw;
  }
}

/** Parses argv against the flag table. Positionals are returned, not judged. */
export function parseFlags(specs: FlagSpec[], argv: string[]): ParsedArgs {
  const byName = new Map<string, FlagSpec>();
  for (const spec of specs) {
    byName.set(`--${spec.name}`, spec);
    if (spec.short) byName.set(`-${spec.short}`, spec);
  }
  const values: FlagValues = {};
  const positionals: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--") {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith("-") || arg === "-") {
      positionals.push(arg);
      continue;
    }
    const eq = arg.indexOf("=");
    const name = eq >= 0 && arg.startsWith("--") ? arg.slice(0, eq) : arg;
    const spec = byName.get(name);
    if (!spec) throw new UsageError(`unknown flag: ${name}`);
    let raw: string | undefined = eq >= 0 && arg.startsWith("--") ? arg.slice(eq + 1) : undefined;
    if (spec.type === "boolean") {
      values[spec.name] = raw === undefined ? true : convert(spec, raw);
      continue;
    }
    if (raw === undefined) {
      if (i + 1 >= argv.length) throw new UsageError(`flag needs an argument: ${name}`);
      raw = argv[++i];
    }
    if (spec.type === "list") {
      const list = (values[spec.name] as string[] | undefined) ?? [];
      list.push(raw);
      values[spec.name] = list;
    } else {
      values[spec.name] = convert(spec, raw);
    }
  }
  return { values, positionals };
}

/** Names of secret flags that were given on the command line (for a warning). */
export function secretsOnCommandLine(specs: FlagSpec[], values: FlagValues): string[] {
  return specs.filter((s) => s.secret && values[s.name] !== undefined).map((s) => `--${s.name}`);
}

/** Renders the flag table for --help. */
export function renderHelp(usage: string, summary: string, specs: FlagSpec[]): string {
  const rows = specs.map((spec) => {
    const short = spec.short ? `-${spec.short}, ` : "    ";
    const value = spec.type === "boolean" ? "" : ` ${spec.value ?? spec.type}`;
    const def = spec.defaultText ? ` (default ${spec.defaultText})` : "";
    return { left: `  ${short}--${spec.name}${value}`, right: `${spec.help}${def}` };
  });
  const width = Math.min(40, Math.max(...rows.map((r) => r.left.length)) + 2);
  const lines = rows.map((r) =>
    r.left.length >= width ? `${r.left}\n${" ".repeat(width)}${r.right}` : r.left.padEnd(width) +
      r.right
  );
  return `Usage: ${usage}\n\n${summary}\n\nFlags:\n${lines.join("\n")}\n`;
}

/** Renders the flag table as Markdown (README reference). */
export function renderMarkdown(specs: FlagSpec[]): string {
  const lines = ["| Flag | Default | Meaning |", "|---|---|---|"];
  for (const spec of specs) {
    const value = spec.type === "boolean" ? "" : ` ${spec.value ?? spec.type}`;
    const short = spec.short ? `-${spec.short}, ` : "";
    lines.push(
      `| \`${short}--${spec.name}${value}\` | ${
        spec.defaultText ? `\`${spec.defaultText}\`` : ""
      } | ${spec.help.replaceAll("|", "\\|").replaceAll("<", "&lt;").replaceAll(">", "&gt;")} |`,
    );
  }
  return lines.join("\n");
}
