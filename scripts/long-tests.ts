/**
 * The test files that run in `npm run reliability` and not in `npm test`: the long end-to-end runs
 * (faults injected into real processes, links and disks; a fleet under load; clocks stepped; a
 * gateway killed), so that `npm test` keeps to its 20 minutes on 2 cores. Both scripts read this
 * one list (scripts/test.ts leaves these out when it is given no files; scripts/reliability.ts runs
 * them). `bun test FILE` runs any of them alone, as it runs any other file.
 *
 * What stays in `npm test` covers each of these areas in a shorter form: the update flow and its
 * rollback through the compiled binaries (test/build/compiled-flow.test.ts runs
 * test/fioup/update.test.ts with them), SIGKILL of fioup mid-update (test/fioup/resilience.test.ts),
 * a disk too small for an update (test/fioup/space.test.ts), the security refusals
 * (test/reliability/*-attacks, gateway-access, blob-tamper, crash-explorer), online deltas (test/deltas/), offline bundles
 * (test/offline/offline.test.ts), replicas on PostgreSQL behind HAProxy (test/gateway/replicas.test.ts,
 * walk-replicas, test/registry/), clocks (test/clock/wrong-clock, replica-skew), Kanto
 * (test/kanto/: its rollbacks in desired-state and lifecycle), rollouts (the engine's own tests,
 * test/rollouts/operator-cli: waves, a halt on failures; test/ui/rollouts) and progress lines
 * (lib/cli/progress.test.ts; test/preload/progress.test.ts waits out preload's 10 s quiet spells).
 *
 * @module
 */

/** Paths from the repository root, each an existing test file (scripts/test.ts checks). */
export const LONG_TESTS: readonly string[] = [
  // The reliability areas that take long (docs/reliability.md has their short and full sizes).
  "test/reliability/power-cuts.test.ts",
  "test/reliability/bad-network.test.ts",
  "test/reliability/replica-kill.test.ts",
  "test/reliability/durability.test.ts",
  "test/reliability/disk.test.ts",
  "test/reliability/delta-power-cuts.test.ts",
  "test/reliability/rollout-kills.test.ts",
  "test/reliability/early-start-systemd.test.ts",
  "test/reliability/load.test.ts",
  "test/kanto/crash.test.ts",
  "test/kanto/second-rollback.test.ts",
  // The broker away for 10 s mid-apply, and a broker that refuses the subscription (about 40 s).
  "test/kanto/broker-link.test.ts",
  // Rollouts end to end: 200 simulated and 2 real devices through waves, a failing app's halt, a
  // gateway killed mid-rollout, maintenance windows (about 100 s; also run on PostgreSQL).
  "test/rollouts/rollouts.test.ts",
  // Preload's progress lines, which take the 10 s a quiet terminal or log waits for each.
  "test/preload/progress.test.ts",
  // fioup under faults, signals and long waits; its update flow from the source tree (npm test runs
  // the same file through the compiled binaries).
  "test/fioup/update.test.ts",
  "test/fioup/fetch-count.test.ts",
  "test/fioup/install-space.test.ts",
  "test/fioup/full-disk-refusal.test.ts",
  "test/fioup/daemon-network.test.ts",
  "test/fioup/daemon-gateway-back.test.ts",
  "test/fioup/stall-status.test.ts",
  "test/fioup/cancel-power-cut.test.ts",
  "test/fioup/faults.test.ts",
  "test/fioup/daemon-sigterm-start.test.ts",
  "test/fioup/wrong-order.test.ts",
  "test/fioup/holds.test.ts",
  "test/offline/watch-hold.test.ts",
  // Clocks stepped under running processes.
  "test/clock/clock-step.test.ts",
  "test/clock/gateway-clock-step.test.ts",
  // Offline bundles: deltas, damaged and hostile bundles, retries of a watched mount.
  "test/offline/deltas.test.ts",
  "test/offline/bundle-faults.test.ts",
  "test/offline/delta-bomb.test.ts",
  "test/offline/watch-bad-retry.test.ts",
  // Replicas: real fioup devices across replicas, the registry setting changed under them, push while
  // every replica restarts.
  "test/gateway/replicas-fioup.test.ts",
  "test/gateway/replicas-registry-setting.test.ts",
  "test/gateway/walk-push.test.ts",
];
