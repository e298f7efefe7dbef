#!/usr/bin/env bash
# The standalone demo: the classic ingress walkthrough (echo service, path and header routing,
# TLS termination, a Gateway shared across namespaces with a Selector, a 95/5 split, request
# header addition) served live by `sluice run` on 127.0.0.1, with three echo backends.
# Installs what it needs first. `--check` runs the walkthrough's requests, verifies each answer
# and exits (the test suite does this); without it, the demo keeps serving until Ctrl-C, and
# edits to examples/walkthrough apply live.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >&2
NODE=node_modules/.bin/node
OFFSET=${SLUICE_PORT_OFFSET:-8000}
HTTP=$((80 + OFFSET))
HTTPS=$((443 + OFFSET))
ADMIN=127.0.0.1:$((9901 + OFFSET - 8000))

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

# The walkthrough's EndpointSlices point at 127.0.0.11-13:3000.
$NODE bin/sluice.js echo --mode http --listen 127.0.0.11:3000 --pod echo-5d8c7 --namespace shop --service echo >/dev/null & pids+=($!)
$NODE bin/sluice.js echo --mode http --listen 127.0.0.12:3000 --pod echo-canary-9f2b1 --namespace shop --service echo-canary >/dev/null & pids+=($!)
$NODE bin/sluice.js echo --mode http --listen 127.0.0.13:3000 --pod echo-admin-41ac0 --namespace shop --service echo-admin >/dev/null & pids+=($!)
$NODE bin/sluice.js run -f examples/walkthrough --port-offset "$OFFSET" --admin "$ADMIN" --no-access-log & pids+=($!)

for _ in $(seq 100); do
  curl -fs "http://$ADMIN/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fs "http://$ADMIN/readyz" >/dev/null || { echo "demo: sluice run did not become ready" >&2; exit 1; }

pod() { grep -o '"pod":"[^"]*"' | cut -d'"' -f4; }

if [ "${1:-}" = "--check" ]; then
  fail() { echo "demo check failed: $*" >&2; exit 1; }
  [ "$(curl -fs -H 'Host: example.org' "http://127.0.0.1:$HTTP/admin/users" | pod)" = echo-admin-41ac0 ] || fail "path routing"
  [ "$(curl -fs -H 'Host: example.org' -H 'x-canary: always' "http://127.0.0.1:$HTTP/" | pod)" = echo-canary-9f2b1 ] || fail "header routing"
  # Bodies are captured before grepping: `grep -q` exiting early would fail curl under pipefail.
  body=$(curl -fs -H 'Host: example.org' "http://127.0.0.1:$HTTP/")
  grep -q '"X-Served-By":\["sluice"\]' <<<"$body" || fail "request header addition"
  body=$(curl -sSk --resolve "example.org:$HTTPS:127.0.0.1" "https://example.org:$HTTPS/" 2>&1 || true)
  grep -qF '"X-Forwarded-Proto":["https"]' <<<"$body" || fail "TLS termination: $body"
  canary=$(for _ in $(seq 400); do curl -fs -H 'Host: example.org' "http://127.0.0.1:$HTTP/"; echo; done | pod | grep -c canary || true)
  [ "$canary" -ge 6 ] && [ "$canary" -le 40 ] || fail "95/5 split: $canary of 400 went to the canary"
  [ "$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: sandbox.example' "http://127.0.0.1:$HTTP/")" = 404 ] || fail "route from a namespace the Gateway does not allow"
  echo "demo check passed: path and header routing, header addition, TLS, 95/5 split ($canary/400 to the canary), namespace selector"
  exit 0
fi

cat <<EOF

Sluice is serving the walkthrough in examples/walkthrough (listener port P is on 127.0.0.1:P+$OFFSET).
Try, in another terminal:

  # The echo service: the backend answers with the request it saw (note X-Served-By, added by the route)
  curl -s -H 'Host: example.org' http://127.0.0.1:$HTTP/

  # Path routing: /admin goes to echo-admin
  curl -s -H 'Host: example.org' http://127.0.0.1:$HTTP/admin

  # Header routing: x-canary: always goes to echo-canary
  curl -s -H 'Host: example.org' -H 'x-canary: always' http://127.0.0.1:$HTTP/

  # TLS termination with the certificate from the Secret infra/example-org-tls (self-signed: -k)
  curl -sk --resolve example.org:$HTTPS:127.0.0.1 https://example.org:$HTTPS/

  # The 95/5 split between echo and echo-canary
  for i in \$(seq 200); do curl -s -H 'Host: example.org' http://127.0.0.1:$HTTP/; echo; done | grep -o '"pod":"[^"]*"' | sort | uniq -c

  # The shared Gateway only admits routes from namespaces labelled shared-gateway-access=true:
  # sandbox/not-allowed was refused (see its status in the log above).

  # Metrics
  curl -s http://$ADMIN/metrics | grep sluice_proxy_requests_total

Edit the files in examples/walkthrough: changes apply live. Ctrl-C stops.
EOF
wait "${pids[3]}"
