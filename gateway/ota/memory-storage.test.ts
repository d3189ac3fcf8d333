import { describe } from "bun:test";
import { MemoryTufStorage } from "./memory-storage.ts";
import { tufStorageContract } from "./_storage-contract.ts";

describe("MemoryTufStorage", () => tufStorageContract(async () => new MemoryTufStorage()));
