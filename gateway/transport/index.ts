export * from "./listen.ts";
export * from "./options.ts";
export * from "./url.ts";
