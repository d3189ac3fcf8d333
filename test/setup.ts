// Preloaded by bunfig.toml. Raises the per-test timeout for a bare `bun test <one file>`;
// bun 1.4 applies a preload's setDefaultTimeout to the first test file only, so `npm test`
// also passes `--timeout 120000`, which covers every file.
import { setDefaultTimeout } from "bun:test";

setDefaultTimeout(120_000);
