/** The gateway CLI's command table: one file per command, loaded lazily. */
import type { Command } from "../../lib/cli/command.ts";

export const commands = {
  serve: () => import("./serve.ts"),
  "tokens create": () => import("./tokens-create.ts"),
  "tokens list": () => import("./tokens-list.ts"),
  "tokens revoke": () => import("./tokens-revoke.ts"),
  "devices list": () => import("./devices-list.ts"),
  "devices show": () => import("./devices-show.ts"),
  "devices revoke": () => import("./devices-revoke.ts"),
  "devices tag": () => import("./devices-tag.ts"),
  "targets list": () => import("./targets-list.ts"),
  "keys rotate": () => import("./keys-rotate.ts"),
  "keys generate": () => import("./keys-generate.ts"),
  "keys init-root": () => import("./keys-init-root.ts"),
  "keys sign-root": () => import("./keys-sign-root.ts"),
  "keys push-root": () => import("./keys-push-root.ts"),
  "registry gc": () => import("./registry-gc.ts"),
  backup: () => import("./backup.ts"),
  "backup keygen": () => import("./backup-keygen.ts"),
  restore: () => import("./restore.ts"),
  publish: () => import("../publish/command.ts"),
  export: () => import("./export.ts"),
} satisfies Record<string, () => Promise<{ default: Command<any> }>>;
