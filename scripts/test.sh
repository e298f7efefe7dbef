#!/usr/bin/env bash
# The whole test suite: lint, type check, and every test (unit, golden, integration, and the
# privileged eBPF tests when run as root). Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npm test --silent
