export * from "./canonical-json.ts";
export * from "./keys.ts";
export * from "./metadata.ts";
export * from "./fetcher.ts";
export * from "./verification-errors.ts";
export * from "./verify-targets.ts";
export * from "./select-target.ts";
export * from "./root-ceremony.ts";
