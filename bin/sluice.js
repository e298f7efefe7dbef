#!/usr/bin/env node
// Entry point of the `sluice` command; the code is TypeScript run directly by Node 24.
import { main } from "../operator/cli.ts";

process.exitCode = await main(process.argv.slice(2));
