import { defineCommand, formatFlag } from "../../lib/cli/command.ts";
import { FileExistsError } from "../../lib/fs/atomic-write.ts";
import { fsWhy } from "../../lib/fs/why.ts";
import { generateKey } from "../../lib/tuf/keys.ts";
import { writeKeyFiles } from "../ota/ceremony-files.ts";
import { keyPairPrefix } from "./_key-out.ts";

export default defineCommand({
  summary: "Make a TUF signing key (ed25519): PREFIX.json is the private key, PREFIX.pub.json what others may see",
  description: [
    "Run it where the key will live: an offline machine for a root key (each key holder makes their own),",
    "or the gateway for an online key (then move PREFIX.json into DIR/tuf/keys/). Hand PREFIX.pub.json to",
    "whoever drafts the root (gateway keys init-root --key ROLE=PREFIX.pub.json). Never overwrites a file.",
    "See docs/keys.md for the whole ceremony.",
  ].join("\n"),
  flags: {
    out: { type: "string", description: "Writes PREFIX.json (private, mode 0600) and PREFIX.pub.json (public)", placeholder: "PREFIX" },
    ...formatFlag,
  },
  async run({ flags, out }) {
    // "bob.pub.json", "bob.pub" and "bob.json" all mean the pair bob.json/bob.pub.json.
    const prefix = await keyPairPrefix(flags.out, [".pub.json", ".json", ".pub"], ".json");
    const key = generateKey();
    const files = await writeKeyFiles(prefix, key).catch((e: unknown) => {
      if (e instanceof FileExistsError) throw e;
      throw new Error(`Cannot write the key files ${prefix}.json and ${prefix}.pub.json: ${fsWhy(e)}`); // not its cause: that names a temp file
    });
    out.result(
      { keyId: key.keyId, ...files },
      (r) => `key ${r.keyId}\nwrote ${r.private} (private: keep it where it signs) and ${r.public} (public: give it to the root drafter)`,
    );
  },
});
