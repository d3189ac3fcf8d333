export * from "./errors.ts";
export * from "./registry.ts";
export * from "./storage.ts";
export * from "./token.ts";
export * from "./gc.ts";
export * from "./range.ts";
export * from "./manifest.ts";
export * from "./served-bytes.ts";
