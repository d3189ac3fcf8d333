export * from "./factory-config.ts";
export * from "./tagging.ts";
export * from "./preload.ts";
