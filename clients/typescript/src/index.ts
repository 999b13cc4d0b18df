// The typed client: openapi-fetch over the types openapi-typescript generated from the service's
// /openapi.json (src/schema.d.ts, never edited by hand: `npm run generate` rewrites it, and
// scripts/client.sh fails when it is out of date with the document).
import createClient, { type Client, type ClientOptions } from "openapi-fetch";
import type { paths } from "./schema.js";

export type { components, operations, paths } from "./schema.js";
export type AnalyticsClient = Client<paths>;

/** A client for the service at `baseUrl`, sending `token` as its bearer token. */
export function createAnalyticsClient(baseUrl: string, token?: string, options: ClientOptions = {}): AnalyticsClient {
  const headers = new Headers(options.headers as HeadersInit | undefined);
  if (token) headers.set("Authorization", `Bearer ${token}`);
  return createClient<paths>({ ...options, baseUrl, headers });
}
