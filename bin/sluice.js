#!/usr/bin/env node
// Entry point of the `sluice` command; the code is TypeScript run directly by Node 24.
// The compile cache (os.tmpdir()/node-compile-cache, or NODE_COMPILE_CACHE) keeps the type-stripped
// and compiled modules between runs: later starts skip the TypeScript stripper, ~20 MB less memory.
// It must be on before the first TypeScript module loads, hence the dynamic import.
import module from "node:module";

// These machines come with Node 20, which cannot run TypeScript: say which Node to use rather
// than fail with a stack trace about a ".ts" extension.
if (Number(process.versions.node.split(".")[0]) < 24) {
  process.stderr.write(`sluice needs Node.js 24 or later, and this is ${process.version}. The project installs its own: after \`npm ci\`, run \`npx sluice ...\` or \`node_modules/.bin/node bin/sluice.js ...\`.\n`);
  process.exit(1);
}
module.enableCompileCache?.();
const { main } = await import("../operator/cli.ts");
process.exitCode = await main(process.argv.slice(2));
