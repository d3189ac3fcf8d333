export * from "./auth.ts";
export * from "./devices.ts";
export * from "./fleet.ts";
export * from "./keys.ts";
export * from "./targets.ts";
export * from "./tokens.ts";
export * from "./groups.ts";
export * from "./rollouts.ts";
