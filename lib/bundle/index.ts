export * from "./format.ts";
export * from "./bundle-registry.ts";
export * from "./bundle-metadata.ts";
