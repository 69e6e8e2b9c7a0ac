// Owns turning a Request into an identity: Basic credential parsing and the authenticators for
// --no-auth, proxy auth, htpasswd (restic REST) and BorgStore's single --username/--password.

import { constantTimeEqual, type HtpasswdFile } from "./htpasswd.ts";

/** Basic credentials as presented by a client. */
export interface BasicCredentials {
  user: string;
  password: string;
}

/** Decides who sent a request: a username ("" when anonymous) or null when not authenticated. */
export interface Authenticator {
  authenticate(request: Request): Promise<string | null>;
}

/** Longer Authorization headers are refused outright (about 6 KiB of credentials). */
const MAX_HEADER_LENGTH = 8192;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** Strict standard base64 to UTF-8 text; null if either step fails. */
function decodeBase64Utf8(text: string): string | null {
  if (!BASE64.test(text)) return null;
  try {
    const binary = atob(text);
    const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
    return utf8.decode(bytes);
  } catch {
    return null;
  }
}

/** Parses `Basic <base64(user:password)>` (scheme case-insensitive, one space); null if malformed. */
export function parseBasicAuth(header: string | null): BasicCredentials | null {
  if (typeof header !== "string" || header.length > MAX_HEADER_LENGTH) return null;
  if (header.length < 6 || header.slice(0, 6).toLowerCase() !== "basic ") return null;
  const decoded = decodeBase64Utf8(header.slice(6));
  if (decoded === null) return null;
  const colon = decoded.indexOf(":");
  if (colon < 0) return null;
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/** --no-auth: every request is the anonymous user "". */
export function noAuth(): Authenticator {
  return { authenticate: () => Promise.resolve("") };
}

/** --proxy-auth-username: trusts the named header blindly; missing or empty gives null. */
export function proxyAuth(headerName: string): Authenticator {
  return {
    authenticate: (request) => {
      const value = request.headers.get(headerName);
      return Promise.resolve(value === null || value === "" ? null : value);
    },
  };
}

/** htpasswd Basic auth: runs the periodic reload check, then verifies the credentials. */
export function htpasswdAuth(file: HtpasswdFile): Authenticator {
  return {
    authenticate: async (request) => {
      await file.maybeReload();
      const credentials = parseBasicAuth(request.headers.get("authorization"));
      if (credentials === null) return null;
      return (await file.verify(credentials.user, credentials.password)) ? credentials.user : null;
    },
  };
}

/** BorgStore --username/--password: both compared in constant time; both must be non-empty. */
export function singleUserAuth(username: string, password: string): Authenticator {
  if (username === "" || password === "") {
    throw new TypeError("singleUserAuth needs a non-empty username and password");
  }
  return {
    authenticate: async (request) => {
      const credentials = parseBasicAuth(request.headers.get("authorization"));
      if (credentials === null) return null;
      const userOk = await constantTimeEqual(credentials.user, username);
      const passwordOk = await constantTimeEqual(credentials.password, password);
      return userOk && passwordOk ? username : null;
    },
  };
}
