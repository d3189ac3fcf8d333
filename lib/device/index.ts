/**
 * The on-device layout fioup and preload must both produce and read: the blob
 * store, the default paths, the preloaded target, and the resolution of a
 * target's apps to blobs.
 *
 * @module
 */
export * from "./paths.ts";
export * from "./preloaded-target.ts";
export * from "./resolve.ts";
export * from "./store.ts";
