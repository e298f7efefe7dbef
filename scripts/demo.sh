#!/usr/bin/env bash
# The standalone demo: the classic ingress walkthrough (echo service, path and header routing,
# TLS, a Gateway shared across namespaces, a 95/5 split, header modification), rendered by the
# same pipeline the operator runs: every status, the generated Service, DNS records and the
# proxy's route table. Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
node_modules/.bin/node bin/sluice.js render -f examples/walkthrough "$@"
