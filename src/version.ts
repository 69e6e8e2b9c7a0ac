// The version, stamped from deno.json so builds and `--version` agree.

import meta from "../deno.json" with { type: "json" };

export const VERSION: string = meta.version;
