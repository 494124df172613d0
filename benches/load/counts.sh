#!/usr/bin/env bash
# Instructions and syscalls per request, keygate vs nginx, with and without
# access logs (README "Performance"). One command from a clean checkout:
#   benches/load/counts.sh               # 5 s per run, 8 connections
#   TOP=25 benches/load/counts.sh        # also keygate's hottest functions
# Counts do not drift with machine load as wall-clock figures do.
# Binds only 127.0.0.1, stops by itself, kills only the PIDs it started.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

need=()
command -v nginx >/dev/null || need+=(nginx-light)
command -v wrk >/dev/null || need+=(wrk)
command -v valgrind >/dev/null || need+=(valgrind)
command -v strace >/dev/null || need+=(strace)
command -v taskset >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]} from Debian" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

ulimit -n 65536 2>/dev/null || true
# The release build is what is counted; with TOP set, a profiling build
# (line tables, no LTO) names the functions the instructions go to.
(cd "$root" && cargo build --release --locked --bin keygate)
profiled=()
if [ "${TOP:-0}" != 0 ]; then
  (cd "$root" && cargo build --profile profiling --locked --bin keygate)
  profiled=(--profiled "$root/target/profiling/keygate")
fi
cd "$here"
exec python3 "$here/counts.py" --keygate "$root/target/release/keygate" "${profiled[@]}" "$@"
