// The `stowage serve` command line: rest-server's flags (same names, same defaults where they
// are safe) plus stowage's own, turned into one validated ServeConfig.

import { type FlagSpec, type FlagValues, parseFlags, UsageError } from "./flags.ts";
import { parseS3Backend, S3ConfigError, type S3Settings } from "../storage/s3_config.ts";
import type { ConnectionTimeouts } from "../transport/timeouts.ts";
import { TIMEOUT_FLAGS, timeoutsFrom } from "./timeout_flags.ts";

export interface ServeConfig {
  path: string;
  /** Set for `--backend s3://…`: the data lives in an S3 bucket; `path` is then "". */
  s3: S3Settings | null;
  listen: string;
  log: string | null;
  logFormat: "combined" | "json";
  debug: boolean;
  tls: boolean;
  tlsCert: string;
  tlsKey: string;
  tlsMinVersion: "1.2" | "1.3";
  noAuth: boolean;
  htpasswdFile: string;
  proxyAuthUsername: string | null;
  verifyUpload: boolean;
  appendOnly: boolean;
  privateRepos: boolean;
  prometheus: boolean;
  prometheusNoAuth: boolean;
  maxSize: number;
  groupAccessibleRepos: boolean;
  unixSocketMode: number;
  /** Header-read and idle timeouts of the TCP, TLS and socket-activated listeners. */
  timeouts: ConnectionTimeouts;
}

export const SERVE_FLAGS: FlagSpec[] = [
  { name: "path", type: "string", value: "DIR", help: "data directory (required)" },
  {
    name: "backend",
    type: "string",
    value: "URL",
    help: "where the data lives instead of --path: file:///DIR or s3://BUCKET[/PREFIX]",
  },
  {
    name: "s3-endpoint",
    type: "string",
    value: "URL",
    defaultText: "$AWS_ENDPOINT_URL, else AWS",
    help: "S3 service URL, e.g. http://10.0.0.5:7480 (Ceph RGW), https://minio.example",
  },
  {
    name: "s3-region",
    type: "string",
    value: "REGION",
    defaultText: "$AWS_REGION, else us-east-1",
    help: "S3 region used in request signatures",
  },
  {
    name: "s3-path-style",
    type: "boolean",
    help: "bucket in the URL path instead of the host name (default for IP and localhost)",
  },
  {
    name: "s3-access-key-file",
    type: "string",
    value: "FILE",
    defaultText: "$AWS_ACCESS_KEY_ID",
    help: "file holding the S3 access key ID",
  },
  {
    name: "s3-secret-key-file",
    type: "string",
    value: "FILE",
    defaultText: "$AWS_SECRET_ACCESS_KEY",
    help: "file holding the S3 secret access key",
  },
  {
    name: "s3-part-size",
    type: "integer",
    value: "BYTES",
    defaultText: "8388608",
    help: "S3 multipart part size; smaller objects are sent with one PUT",
  },
  {
    name: "config",
    type: "string",
    value: "FILE",
    help: "read settings, grants and quotas from a JSON file (flags and STOWAGE_* override it)",
  },
  {
    name: "listen",
    type: "string",
    value: "ADDR",
    defaultText: ":8000",
    help: "listen address: host:port, :port, [v6]:port, or unix:/path/to.sock",
  },
  {
    name: "unix-socket-mode",
    type: "string",
    value: "MODE",
    defaultText: "0660",
    help: "file mode (octal) of a unix socket given with --listen unix:…",
  },
  ...TIMEOUT_FLAGS,
  { name: "no-auth", type: "boolean", help: "disable authentication" },
  {
    name: "htpasswd-file",
    type: "string",
    value: "FILE",
    defaultText: "<path>/.htpasswd",
    help: "htpasswd file (bcrypt, {SHA}, $apr1$, $5$, $6$)",
  },
  {
    name: "proxy-auth-username",
    type: "string",
    value: "HEADER",
    help: "take the user name from this request header set by a trusted reverse proxy",
  },
  { name: "append-only", type: "boolean", help: "allow only appends: no deletes except locks" },
  { name: "private-repos", type: "boolean", help: "users may only reach /<user>/… repositories" },
  {
    name: "max-size",
    type: "integer",
    value: "BYTES",
    defaultText: "0 (off)",
    help: "maximum total size of the data directory in bytes",
  },
  { name: "no-verify-upload", type: "boolean", help: "do not verify the SHA-256 of uploads" },
  {
    name: "group-accessible-repos",
    type: "boolean",
    help: "create directories 0770 and files 0660 instead of 0700 and 0600",
  },
  { name: "tls", type: "boolean", help: "serve HTTPS" },
  {
    name: "tls-cert",
    type: "string",
    value: "FILE",
    defaultText: "<path>/public_key",
    help: "TLS certificate chain (PEM)",
  },
  {
    name: "tls-key",
    type: "string",
    value: "FILE",
    defaultText: "<path>/private_key",
    help: "TLS private key (PEM)",
  },
  {
    name: "tls-min-ver",
    type: "string",
    value: "VERSION",
    defaultText: "1.2",
    help: "minimum TLS version: 1.2 or 1.3",
  },
  { name: "prometheus", type: "boolean", help: "serve Prometheus metrics at /metrics" },
  { name: "prometheus-no-auth", type: "boolean", help: "serve /metrics without authentication" },
  {
    name: "log",
    type: "string",
    value: "FILE",
    help: "write an access log to FILE, or - for stdout",
  },
  {
    name: "log-format",
    type: "string",
    value: "FORMAT",
    defaultText: "combined",
    help: "access log format: combined (Apache) or json",
  },
  { name: "debug", type: "boolean", help: "log every request and internal errors on stderr" },
  {
    name: "cpu-profile",
    type: "string",
    value: "FILE",
    help: "accepted for rest-server compatibility; ignored",
  },
  { name: "help", short: "h", type: "boolean", help: "show this help" },
  { name: "version", short: "v", type: "boolean", help: "show the version" },
];

function text(values: FlagValues, name: string): string | undefined {
  return values[name] as string | undefined;
}

function flag(values: FlagValues, name: string): boolean {
  return values[name] === true;
}

/** Turns parsed flag values into a ServeConfig; throws UsageError on invalid combinations. */
export function buildServeConfig(values: FlagValues, positionals: string[]): ServeConfig {
  if (positionals.length > 0) {
    throw new UsageError(`expects no arguments - unknown argument: ${positionals[0]}`);
  }
  let path = text(values, "path");
  const backend = text(values, "backend");
  let s3: S3Settings | null = null;
  if (backend !== undefined && backend !== "") {
    if (path !== undefined && path !== "") {
      throw new UsageError("--path and --backend exclude each other");
    }
    if (backend.startsWith("file://")) {
      path = decodeURIComponent(new URL(backend).pathname);
    } else if (backend.startsWith("s3://")) {
      try {
        parseS3Backend(backend);
      } catch (error) {
        if (error instanceof S3ConfigError) throw new UsageError(error.message);
        throw error;
      }
      s3 = {
        backend,
        endpoint: text(values, "s3-endpoint"),
        region: text(values, "s3-region"),
        pathStyle: flag(values, "s3-path-style") ? true : undefined,
        accessKeyFile: text(values, "s3-access-key-file"),
        secretKeyFile: text(values, "s3-secret-key-file"),
        partSize: values["s3-part-size"] as number | undefined,
      };
      path = "";
      if (
        !flag(values, "no-auth") && !text(values, "proxy-auth-username") &&
        !text(values, "htpasswd-file")
      ) {
        throw new UsageError("--backend s3://… needs --htpasswd-file (or --no-auth)");
      }
      if (flag(values, "tls") && (!text(values, "tls-cert") || !text(values, "tls-key"))) {
        throw new UsageError("--backend s3://… with --tls needs --tls-cert and --tls-key");
      }
    } else {
      throw new UsageError(`unsupported --backend ${backend}: use file:///DIR or s3://BUCKET`);
    }
  }
  if (path === undefined || (path === "" && s3 === null)) {
    throw new UsageError("--path is required (the data directory)");
  }
  const tls = flag(values, "tls");
  if (!tls && (values["tls-cert"] !== undefined || values["tls-key"] !== undefined)) {
    throw new UsageError("requires enabled TLS");
  }
  const minVersion = text(values, "tls-min-ver") ?? "1.2";
  if (minVersion !== "1.2" && minVersion !== "1.3") {
    throw new UsageError(
      `Unsupported TLS min version: ${minVersion}. Allowed versions are 1.2 or 1.3`,
    );
  }
  const logFormat = text(values, "log-format") ?? "combined";
  if (logFormat !== "combined" && logFormat !== "json") {
    throw new UsageError(`invalid --log-format "${logFormat}": expected combined or json`);
  }
  const modeText = text(values, "unix-socket-mode") ?? "0660";
  if (!/^[0-7]{3,4}$/.test(modeText)) {
    throw new UsageError(`invalid --unix-socket-mode "${modeText}": expected octal like 0660`);
  }
  const maxSize = (values["max-size"] as number | undefined) ?? 0;
  const timeouts = timeoutsFrom(values);
  const trimmed = path.length > 1 ? path.replace(/\/+$/, "") : path;
  return {
    path: trimmed,
    s3,
    listen: text(values, "listen") ?? ":8000",
    log: text(values, "log") ?? null,
    logFormat,
    debug: flag(values, "debug"),
    tls,
    tlsCert: text(values, "tls-cert") ?? `${trimmed}/public_key`,
    tlsKey: text(values, "tls-key") ?? `${trimmed}/private_key`,
    tlsMinVersion: minVersion,
    noAuth: flag(values, "no-auth"),
    htpasswdFile: text(values, "htpasswd-file") ?? `${trimmed}/.htpasswd`,
    proxyAuthUsername: text(values, "proxy-auth-username") || null,
    verifyUpload: !flag(values, "no-verify-upload"),
    appendOnly: flag(values, "append-only"),
    privateRepos: flag(values, "private-repos"),
    prometheus: flag(values, "prometheus"),
    prometheusNoAuth: flag(values, "prometheus-no-auth"),
    maxSize: maxSize > 0 ? maxSize : 0,
    groupAccessibleRepos: flag(values, "group-accessible-repos"),
    unixSocketMode: parseInt(modeText, 8),
    timeouts,
  };
}

export function parseServeArgs(argv: string[]): { config: ServeConfig | null; values: FlagValues } {
  const { values, positionals } = parseFlags(SERVE_FLAGS, argv);
  if (values.help || values.version) return { config: null, values };
  return { config: buildServeConfig(values, positionals), values };
}
