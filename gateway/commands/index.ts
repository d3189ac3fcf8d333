/** The gateway CLI's command table (STYLE §5): one file per command, loaded lazily. */
import type { Command } from "../../lib/cli/command.ts";

export const commands = {
  serve: () => import("./serve.ts"),
  "tokens create": () => import("./tokens-create.ts"),
  "tokens list": () => import("./tokens-list.ts"),
  "devices list": () => import("./devices-list.ts"),
  "devices show": () => import("./devices-show.ts"),
  "devices revoke": () => import("./devices-revoke.ts"),
  "targets list": () => import("./targets-list.ts"),
  "keys rotate": () => import("./keys-rotate.ts"),
  "registry gc": () => import("./registry-gc.ts"),
  publish: () => import("../publish/command.ts"),
} satisfies Record<string, () => Promise<{ default: Command<any> }>>;
