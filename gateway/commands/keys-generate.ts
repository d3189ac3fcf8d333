import { UsageError, defineCommand, formatFlag } from "../../lib/cli/command.ts";
import { FileExistsError } from "../../lib/fs/atomic-write.ts";
import { whyCannotWrite } from "../../lib/fs/paths.ts";
import { fsWhy } from "../../lib/fs/why.ts";
import { generateKey } from "../../lib/tuf/keys.ts";
import { writeKeyFiles } from "../ota/ceremony-files.ts";

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
    if (!flags.out) throw new UsageError("--out PREFIX is required");
    // "bob.pub.json" (the file name the user will hand out) means the pair bob.json/bob.pub.json: taken
    // as a prefix, it put the private key in a file named .pub.json.
    const prefix = flags.out.replace(/(\.pub)?\.json$/, "");
    // The folder must be there: a mistyped path would otherwise be created and hold a private key nobody finds.
    const why = await whyCannotWrite(`${prefix}.json`);
    if (why) throw new UsageError(`--out ${flags.out}: ${why}`);
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
