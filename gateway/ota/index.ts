export * from "./storage.ts";
export * from "./memory-storage.ts";
export * from "./key-store.ts";
export * from "./retention.ts";
export * from "./repo.ts";
export * from "./refresh-timer.ts";
