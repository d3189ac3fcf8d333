export * from "./target.ts";
export * from "./device.ts";
