// The little XML the S3 provider reads and writes: ListObjectsV2, ListMultipartUploads,
// InitiateMultipartUpload, CompleteMultipartUpload, DeleteObjects results and <Error> bodies.
// S3 answers are flat, namespace-free documents, so a few anchored regular expressions over
// known element names are enough; every text is entity-decoded, and keys asked with
// `encoding-type=url` are URL-decoded as well.

/** Replaces the five XML entities and numeric character references. */
export function decodeEntities(text: string): string {
  return text.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|amp|lt|gt|quot|apos);/g, (_, entity: string) => {
    switch (entity) {
      case "amp":
        return "&";
      case "lt":
        return "<";
      case "gt":
        return ">";
      case "quot":
        return '"';
      case "apos":
        return "'";
      default:
        return String.fromCodePoint(
          entity[1] === "x" ? parseInt(entity.slice(2), 16) : parseInt(entity.slice(1), 10),
        );
    }
  });
}

/** Escapes text for an XML element body. */
export function escapeXml(text: string): string {
  return text.replace(
    /[&<>"']/g,
    (c) =>
      c === "&"
        ? "&amp;"
        : c === "<"
        ? "&lt;"
        : c === ">"
        ? "&gt;"
        : c === '"'
        ? "&quot;"
        : "&apos;",
  );
}

/** The decoded text of the first `<name>` element in `xml`, or null. */
export function firstTag(xml: string, name: string): string | null {
  const match = new RegExp(`<${name}(?:\\s[^>]*)?>([\\s\\S]*?)</${name}>`).exec(xml);
  if (match) return decodeEntities(match[1]);
  return new RegExp(`<${name}(?:\\s[^>]*)?/>`).test(xml) ? "" : null;
}

/** The raw inner XML of every `<name>` element in `xml`, in document order. */
export function allBlocks(xml: string, name: string): string[] {
  const out: string[] = [];
  const re = new RegExp(`<${name}(?:\\s[^>]*)?>([\\s\\S]*?)</${name}>`, "g");
  for (let m = re.exec(xml); m !== null; m = re.exec(xml)) out.push(m[1]);
  return out;
}

/** Decodes a key listed with `encoding-type=url` (AWS writes spaces as "+", RGW as "%20"). */
export function decodeUrlKey(text: string): string {
  return decodeURIComponent(text.replace(/\+/g, " "));
}

export interface ListedObject {
  key: string;
  size: number;
  lastModifiedMs: number;
  etag: string;
}

export interface ListPage {
  objects: ListedObject[];
  /** Common prefixes (each ends with the delimiter). */
  prefixes: string[];
  truncated: boolean;
  /** Continuation token for the next page (ListObjectsV2), or null. */
  next: string | null;
}

function parseTime(text: string | null): number {
  if (text === null) return 0;
  const ms = Date.parse(text);
  return Number.isFinite(ms) ? ms : 0;
}

/** Parses a ListObjectsV2 result; keys are URL-decoded when the answer says encoding "url". */
export function parseListPage(xml: string): ListPage {
  const urlEncoded = firstTag(xml, "EncodingType") === "url";
  const decodeKey = (raw: string) => (urlEncoded ? decodeUrlKey(raw) : raw);
  const objects: ListedObject[] = allBlocks(xml, "Contents").map((block) => ({
    key: decodeKey(firstTag(block, "Key") ?? ""),
    size: Number(firstTag(block, "Size") ?? "0"),
    lastModifiedMs: parseTime(firstTag(block, "LastModified")),
    etag: (firstTag(block, "ETag") ?? "").replace(/"/g, ""),
  }));
  const prefixes = allBlocks(xml, "CommonPrefixes").map((block) =>
    decodeKey(firstTag(block, "Prefix") ?? "")
  );
  const truncated = firstTag(xml, "IsTruncated") === "true";
  const next = firstTag(xml, "NextContinuationToken");
  return { objects, prefixes, truncated, next: truncated ? next : null };
}

export interface MultipartUploadInfo {
  key: string;
  uploadId: string;
  initiatedMs: number;
}

export interface MultipartUploadPage {
  uploads: MultipartUploadInfo[];
  truncated: boolean;
  nextKeyMarker: string | null;
  nextUploadIdMarker: string | null;
}

/** Parses a ListMultipartUploads result. */
export function parseUploadsPage(xml: string): MultipartUploadPage {
  const urlEncoded = firstTag(xml, "EncodingType") === "url";
  const decodeKey = (raw: string) => (urlEncoded ? decodeUrlKey(raw) : raw);
  const uploads = allBlocks(xml, "Upload").map((block) => ({
    key: decodeKey(firstTag(block, "Key") ?? ""),
    uploadId: firstTag(block, "UploadId") ?? "",
    initiatedMs: parseTime(firstTag(block, "Initiated")),
  }));
  const truncated = firstTag(xml, "IsTruncated") === "true";
  const nextKey = firstTag(xml, "NextKeyMarker");
  return {
    uploads,
    truncated,
    nextKeyMarker: nextKey === null ? null : decodeKey(nextKey),
    nextUploadIdMarker: firstTag(xml, "NextUploadIdMarker"),
  };
}

/** The body of CompleteMultipartUpload for parts 1..n with their ETags. */
export function completeMultipartXml(etags: string[]): string {
  const parts = etags.map((etag, i) =>
    `<Part><PartNumber>${i + 1}</PartNumber><ETag>"${escapeXml(etag)}"</ETag></Part>`
  );
  return `<CompleteMultipartUpload>${parts.join("")}</CompleteMultipartUpload>`;
}

/** The body of DeleteObjects (quiet mode: only failures are reported). */
export function deleteObjectsXml(keys: string[]): string {
  const objects = keys.map((key) => `<Object><Key>${escapeXml(key)}</Key></Object>`);
  return `<Delete><Quiet>true</Quiet>${objects.join("")}</Delete>`;
}

export interface S3ErrorBody {
  code: string;
  message: string;
}

/** The Code and Message of an `<Error>` document ("" when absent). */
export function parseErrorBody(xml: string): S3ErrorBody {
  const block = allBlocks(xml, "Error")[0] ?? xml;
  return { code: firstTag(block, "Code") ?? "", message: firstTag(block, "Message") ?? "" };
}

/** Per-key failures reported by DeleteObjects. */
export function parseDeleteErrors(xml: string): Array<{ key: string; code: string }> {
  return allBlocks(xml, "Error").map((block) => ({
    key: firstTag(block, "Key") ?? "",
    code: firstTag(block, "Code") ?? "",
  }));
}
