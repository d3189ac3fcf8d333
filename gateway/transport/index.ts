export * from "./listen.ts";
export * from "./options.ts";
