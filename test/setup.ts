// Loaded before every test file (bunfig.toml [test].preload): tests start real services
// (dockerd, PostgreSQL, registries), so a test may take longer than bun's 5 s default.
import { setDefaultTimeout } from "bun:test";

setDefaultTimeout(120_000);
