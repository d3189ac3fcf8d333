/** fioup's command table: one file per command, imported lazily. */
import type { Command } from "../../lib/cli/command.ts";

export const commands = {
  register: () => import("./register.ts"),
  check: () => import("./check.ts"),
  fetch: () => import("./fetch.ts"),
  install: () => import("./install.ts"),
  start: () => import("./start.ts"),
  update: () => import("./update.ts"),
  cancel: () => import("./cancel.ts"),
  lock: () => import("./lock.ts"),
  unlock: () => import("./unlock.ts"),
  status: () => import("./status.ts"),
  daemon: () => import("./daemon.ts"),
  agent: () => import("./agent.ts"),
  "early-start": () => import("./early-start.ts"),
  version: () => import("./version.ts"),
} satisfies Record<string, () => Promise<{ default: Command<any> }>>;
