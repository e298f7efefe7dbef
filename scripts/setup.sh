#!/usr/bin/env bash
# Installs everything Sluice needs on a fresh Debian machine (root, Node 20, nothing else):
# the Debian packages for the eBPF datapath and its tests, then the npm packages, which bring
# Node.js 24 itself (the `node` package) so that every npm script runs on Node 24.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: clang/llvm/libbpf-dev/bpftool build and inspect the eBPF programs; iproute2
# gives `ip netns` and `tc` for the datapath tests; openssl makes the TLS tests' certificates;
# curl drives the demo; nginx, haproxy and wrk are the L7 benchmark's peers and load generator;
# iptables and ipvsadm are the L4 benchmark's peers, iperf3 its throughput load, ping a probe.
debs=(clang llvm libbpf-dev bpftool iproute2 openssl curl ca-certificates nginx haproxy wrk iptables ipvsadm iperf3 iputils-ping)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Packages must not start their services (nginx would take port 80): benchmarks start their own.
    guard=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && guard=1
    fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    if [ -n "$guard" ]; then rm -f /usr/sbin/policy-rc.d; fi
  else
    echo "setup: not root, cannot install Debian packages: ${missing[*]} (the eBPF tests will skip)" >&2
  fi
fi

# npm packages, exactly as locked. Re-run only when the lockfile changed since the last install.
stamp=node_modules/.sluice-lock-stamp
if [ ! -f "$stamp" ] || ! cmp -s package-lock.json "$stamp"; then
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json "$stamp"
fi
