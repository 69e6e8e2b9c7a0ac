// From command-line / config-file settings to S3ProviderOptions: the `s3://bucket/prefix`
// backend URL, the endpoint and region (flags, then the AWS environment variables, then AWS
// defaults), and the credentials, which never come from argv: files named by flags or the
// config file, inline values of the config file, or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
// (and AWS_SESSION_TOKEN). Problems are S3ConfigErrors with one line meant for the user.

import { unsafeKeyReason } from "./keys.ts";
import type { S3Provider, S3ProviderOptions } from "./s3.ts";

export class S3ConfigError extends Error {
  override name = "S3ConfigError";
}

export interface S3Settings {
  /** `s3://BUCKET` or `s3://BUCKET/PREFIX`. */
  backend: string;
  /** Service URL; default $AWS_ENDPOINT_URL_S3, $AWS_ENDPOINT_URL, else AWS for the region. */
  endpoint?: string;
  /** Default $AWS_REGION, $AWS_DEFAULT_REGION, else us-east-1. */
  region?: string;
  /** Path-style addressing; default: automatic (path-style for IP and localhost endpoints). */
  pathStyle?: boolean;
  /** Files holding the access key ID and the secret access key (surrounding space trimmed). */
  accessKeyFile?: string;
  secretKeyFile?: string;
  /** Inline credentials (from a config file only, never from argv). */
  accessKeyId?: string;
  secretAccessKey?: string;
  /** Multipart part size and single-PUT threshold in bytes (default 8 MiB). */
  partSize?: number;
}

/** Splits `s3://bucket/prefix` into bucket and prefix (no leading or trailing slash). */
export function parseS3Backend(url: string): { bucket: string; prefix: string } {
  const match = /^s3:\/\/([^/?#]+)(\/[^?#]*)?$/.exec(url);
  if (!match) {
    throw new S3ConfigError(`invalid S3 backend ${url}: expected s3://BUCKET[/PREFIX]`);
  }
  const bucket = match[1];
  if (!/^[A-Za-z0-9._-]{1,255}$/.test(bucket)) {
    throw new S3ConfigError(`invalid S3 bucket name ${JSON.stringify(bucket)}`);
  }
  const prefix = (match[2] ?? "").replace(/^\/+|\/+$/g, "");
  const reason = unsafeKeyReason(prefix);
  if (reason !== null) throw new S3ConfigError(`invalid S3 prefix ${prefix}: ${reason}`);
  return { bucket, prefix };
}

async function readSecretFile(path: string, what: string): Promise<string> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    throw new S3ConfigError(`cannot read the ${what} file ${path}: ${(error as Error).message}`);
  }
  const value = text.trim();
  if (value === "") throw new S3ConfigError(`the ${what} file ${path} is empty`);
  return value;
}

/**
 * Resolves settings into provider options. `env` defaults to the process environment; files are
 * read here, so a missing or empty file is reported at startup.
 */
export async function s3ProviderOptions(
  settings: S3Settings,
  env: Record<string, string | undefined> = Deno.env.toObject(),
): Promise<S3ProviderOptions> {
  const { bucket, prefix } = parseS3Backend(settings.backend);
  const region = settings.region || env.AWS_REGION || env.AWS_DEFAULT_REGION || "us-east-1";
  const endpoint = settings.endpoint || env.AWS_ENDPOINT_URL_S3 || env.AWS_ENDPOINT_URL ||
    `https://s3.${region}.amazonaws.com`;
  try {
    const url = new URL(endpoint);
    if (url.protocol !== "http:" && url.protocol !== "https:") throw new Error("scheme");
  } catch {
    throw new S3ConfigError(`invalid S3 endpoint ${endpoint}: expected http(s)://host[:port]`);
  }
  const accessKeyId = settings.accessKeyFile
    ? await readSecretFile(settings.accessKeyFile, "S3 access key")
    : settings.accessKeyId || env.AWS_ACCESS_KEY_ID;
  const secretAccessKey = settings.secretKeyFile
    ? await readSecretFile(settings.secretKeyFile, "S3 secret key")
    : settings.secretAccessKey || env.AWS_SECRET_ACCESS_KEY;
  if (!accessKeyId || !secretAccessKey) {
    throw new S3ConfigError(
      "S3 credentials missing: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or use " +
        "--s3-access-key-file and --s3-secret-key-file",
    );
  }
  const sessionToken = settings.accessKeyFile ? undefined : env.AWS_SESSION_TOKEN || undefined;
  const options: S3ProviderOptions = {
    endpoint,
    region,
    bucket,
    prefix,
    pathStyle: settings.pathStyle,
    credentials: { accessKeyId, secretAccessKey, sessionToken },
  };
  if (settings.partSize !== undefined) {
    if (!Number.isSafeInteger(settings.partSize) || settings.partSize < 1024 * 1024) {
      throw new S3ConfigError("the S3 part size must be at least 1 MiB (5 MiB for AWS)");
    }
    options.partSize = settings.partSize;
    options.multipartThreshold = settings.partSize;
  }
  return options;
}

/** The provider for these settings; invalid combinations are S3ConfigErrors too. */
export async function createS3Provider(
  settings: S3Settings,
  env?: Record<string, string | undefined>,
): Promise<S3Provider> {
  const options = await s3ProviderOptions(settings, env);
  // the S3 client is loaded only when an s3:// backend is used
  const { S3Provider } = await import("./s3.ts");
  try {
    return new S3Provider(options);
  } catch (error) {
    if (error instanceof TypeError) throw new S3ConfigError(error.message);
    throw error;
  }
}
