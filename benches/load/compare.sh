#!/usr/bin/env bash
# Load comparison: keygate vs nginx vs haproxy on the reference job
# (README "Performance"). One command from a clean checkout:
#   benches/load/compare.sh                 # 3 rounds x 10 s per run
#   ROUNDS=1 DURATION=3 benches/load/compare.sh   # quick look
# Binds only 127.0.0.1, stops by itself, kills only the PIDs it started.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

need=()
command -v nginx >/dev/null || need+=(nginx-light)
command -v haproxy >/dev/null || need+=(haproxy)
command -v wrk >/dev/null || need+=(wrk)
command -v taskset >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]} from Debian" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

ulimit -n 65536 2>/dev/null || true
(cd "$root" && cargo build --release --locked --bin keygate)
exec python3 "$here/compare.py" --keygate "$root/target/release/keygate" "$@"
