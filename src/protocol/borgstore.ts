// The BorgStore REST protocol (spec borgstore-rest.md §1–2): method and Accept checks, routing
// by method, `cmd` and path to the operations (borgstore_ops.ts, borgstore_store.ts,
// borgstore_defrag.ts), error responses, and the single-store `borgstore-server-rest`
// personality with its Basic-auth rejection. Every request body is consumed before answering.

import { StowageError } from "../errors.ts";
import { settleBody } from "./borgstore_body.ts";
import type { BorgStore } from "./borgstore_context.ts";
import { defrag } from "./borgstore_defrag.ts";
import { parseTarget, queryParams, rawPath } from "./borgstore_names.ts";
import * as ops from "./borgstore_ops.ts";
import { bytesResponse, errorResponse, textError } from "./borgstore_status.ts";
import { storeItem } from "./borgstore_store.ts";

export type { BorgStore } from "./borgstore_context.ts";

export const BORGSTORE_MEDIA_TYPE = "application/vnd.x.borgstore.rest.v1";

const METHODS = new Set(["GET", "HEAD", "POST", "DELETE"]);

function badRequest(message = "Bad Request"): StowageError {
  return new StowageError("BadRequest", message);
}

function unsupportedMethod(method: string): Response {
  return textError(501, `Unsupported method ('${method}')`, method === "HEAD");
}

/** The Accept value must be exactly the BorgStore media type (no list, no parameters). */
function acceptable(request: Request): boolean {
  return request.headers.get("accept") === BORGSTORE_MEDIA_TYPE;
}

function notAcceptable(request: Request): Response {
  return textError(
    406,
    "Not Acceptable: unsupported or missing Accept header",
    request.method === "HEAD",
  );
}

async function route(request: Request, store: BorgStore, path: string): Promise<Response> {
  const { name, trailingSlash } = parseTarget(path);
  const query = queryParams(request.url);
  const cmd = query("cmd");
  switch (request.method) {
    case "GET":
      if (trailingSlash) return await ops.list(store, name);
      if (name === "") throw badRequest();
      return await ops.load(store, name, request.headers.get("range"));
    case "HEAD":
      return await ops.info(store, name);
    case "POST":
      switch (cmd) {
        case "create":
          return await ops.create(store);
        case "move":
          return await ops.move(store, query("current"), query("new"));
        case "mkdir":
          return await ops.mkdir(store, name);
        case "hash":
          if (name === "") throw badRequest("Missing name for hash");
          return await ops.hash(store, name, query("algorithm") ?? "sha256");
        case "quota":
          return await ops.quota(store);
        case "defrag":
          return await defrag(request, store, {
            target: query("target"),
            algorithm: query("algorithm"),
            namespace: query("namespace"),
            levels: query("levels"),
          });
      }
      if (name === "") throw badRequest();
      return await storeItem(request, store, name); // also for an unknown cmd
    case "DELETE":
      if (cmd === "rmdir") return await ops.rmdir(store, name);
      if (cmd === "destroy") return await ops.destroy(store);
      if (name === "") throw badRequest();
      return await ops.deleteItem(store, name); // also for an unknown cmd
  }
  return unsupportedMethod(request.method);
}

/** Server paths that must never appear in a message (the provider's root, when it has one). */
function hiddenPaths(store: BorgStore): string[] {
  const root = (store.provider as { root?: unknown }).root;
  return typeof root === "string" ? [root] : [];
}

/**
 * Handles one BorgStore request against one store. `path` is the request path relative to the
 * store: starts with "/", not percent-decoded; the query comes from `request.url`.
 */
export async function handleBorgstore(
  request: Request,
  store: BorgStore,
  path: string,
): Promise<Response> {
  let response: Response;
  if (!METHODS.has(request.method)) {
    response = unsupportedMethod(request.method);
  } else if (!acceptable(request)) {
    response = notAcceptable(request);
  } else {
    try {
      response = await route(request, store, path);
    } catch (error) {
      response = errorResponse(error, {
        head: request.method === "HEAD",
        hide: hiddenPaths(store),
        log: store.log ?? ((message) => console.error(message)),
      });
    }
  }
  await settleBody(request);
  return response;
}

/** Rejection of an unauthenticated request (spec §8). */
function unauthorized(request: Request): Response {
  return bytesResponse(401, "Unauthorized", {
    contentType: "text/plain; charset=utf-8",
    headers: { "www-authenticate": 'Basic realm="BorgStore REST Server"' },
    head: request.method === "HEAD",
  });
}

/**
 * The single-store `borgstore-server-rest` personality: 501 for other methods, then the Accept
 * check (406), then authentication (401), then the protocol with the full request path.
 * `authenticate` returns the user name, or null to reject. Answers may hold their body beside
 * them (src/http/held_body.ts): hand them on through `forTransport` or `withHeldBody`.
 */
export function createBorgstoreServerHandler(options: {
  store: BorgStore;
  authenticate: (request: Request) => Promise<string | null>;
}): (request: Request) => Promise<Response> {
  return async (request) => {
    let rejection: Response | null = null;
    if (!METHODS.has(request.method)) rejection = unsupportedMethod(request.method);
    else if (!acceptable(request)) rejection = notAcceptable(request);
    else if (await options.authenticate(request) === null) rejection = unauthorized(request);
    if (rejection !== null) {
      await settleBody(request);
      return rejection;
    }
    return await handleBorgstore(request, options.store, rawPath(request.url));
  };
}
