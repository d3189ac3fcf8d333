export * from "./app-format.ts";
export * from "./compose-file.ts";
export * from "./pin.ts";
export * from "./ignore.ts";
export * from "./bundle.ts";
export * from "./app-manifest.ts";
export * from "./extract.ts";
export * from "./interpolate.ts";
