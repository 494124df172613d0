#!/usr/bin/env bash
# Resident memory of keygate (README "Performance"): idle with the shipped
# config, and with 100 000 declared keys and 10 000 connectors.
#   benches/load/memory.sh
# Binds only 127.0.0.1, stops by itself, kills only the PIDs it started.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
(cd "$root" && cargo build --release --locked --bin keygate)
bin="$root/target/release/keygate"
work=$(mktemp -d /tmp/keygate-mem.XXXX)

rss() { # name, config
  RUST_LOG=warn "$bin" run -c "$2" >/dev/null 2>"$work/$1.err" &
  local pid=$!
  for _ in $(seq 1 600); do
    grep -q "listening\|store opened" "$work/$1.err" 2>/dev/null && break
    curl -fs "http://$3/healthz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  sleep 2
  printf '%-40s %8.1f MiB (VmRSS)  %8.1f MiB (VmHWM)\n' "$1" \
    "$(awk '/VmRSS/ {print $2/1024}' /proc/$pid/status)" "$(awk '/VmHWM/ {print $2/1024}' /proc/$pid/status)"
  kill -TERM "$pid"; wait "$pid" || true
}

sed -e 's/127.0.0.1:8080/127.0.0.1:18380/; s/127.0.0.1:8081/127.0.0.1:18381/' \
  "$root/config/keygate.yaml" > "$work/shipped.yaml"
rss "idle, shipped config" "$work/shipped.yaml" 127.0.0.1:18381

python3 - "$work/big.yaml" <<'PY'
import hashlib, sys
with open(sys.argv[1], "w") as f:
    f.write("server: { listen: 127.0.0.1:18382 }\nadmin: { listen: 127.0.0.1:18383 }\n")
    f.write("tokens:\n  t: { value: { literal: \"sk_test_abc\" }, prefix: Bearer, header: Authorization }\n")
    f.write("connectors:\n")
    for i in range(10_000):
        f.write(f"  c{i}: {{ upstream: \"https://api{i}.example.com\", tokens: [t] }}\n")
    f.write("roles:\n  r:\n    allow:\n      - connector: c0\n")
    f.write("clients:\n  bulk:\n    roles: [r]\n    keys:\n")
    for i in range(100_000):
        h = hashlib.sha256(f"key-{i}".encode()).hexdigest()
        f.write(f"      - {{ name: k{i}, sha256: \"{h}\" }}\n")
PY
rss "100 000 keys, 10 000 connectors" "$work/big.yaml" 127.0.0.1:18383
rm -rf "$work"
