#!/usr/bin/env node
// Entry point of the `sluice` command; the code is TypeScript run directly by Node 24.
// The compile cache (os.tmpdir()/node-compile-cache, or NODE_COMPILE_CACHE) keeps the type-stripped
// and compiled modules between runs: later starts skip the TypeScript stripper, ~20 MB less memory.
// It must be on before the first TypeScript module loads, hence the dynamic import.
import module from "node:module";

module.enableCompileCache?.();
const { main } = await import("../operator/cli.ts");
process.exitCode = await main(process.argv.slice(2));
