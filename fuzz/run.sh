#!/usr/bin/env bash
# Builds every fuzz target, then runs each for SECONDS (default 600), one
# after the other, and prints the executions each reached. Exits non-zero
# when any target crashed, timed out or ran out of memory; the input that
# did it is under fuzz/artifacts/<target>/.
#
# New inputs go to a scratch corpus under fuzz/target/; the committed
# corpus (fuzz/corpus/) and hand-written seeds (fuzz/seeds/) are only
# read. Fold finds back with `cargo fuzz cmin` (see README.md).
set -uo pipefail

secs="${1:-600}"
cd "$(dirname "$0")"

# cargo-fuzz passes -Z flags (the address sanitizer); stable rustc takes them
# only with this set. No nightly toolchain is needed.
export RUSTC_BOOTSTRAP=1

targets=(config key rewrite token_response)

cargo fuzz build || exit 2

failed=()
summary=()
for t in "${targets[@]}"; do
    scratch="target/run-corpus/$t"
    log="target/run-$t.log"
    mkdir -p "$scratch" "corpus/$t"
    dict=()
    case "$t" in
        config) dict=(-dict=dicts/config.dict) ;;
        rewrite) dict=(-dict=dicts/rewrite.dict) ;;
        token_response) dict=(-dict=dicts/json.dict) ;;
    esac
    echo "== $t: ${secs}s (log: fuzz/$log)"
    # -timeout: one input taking 10 s is a finding (a hang), not patience.
    cargo fuzz run "$t" "$scratch" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 "${dict[@]}" >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)
    if [ -z "$execs" ]; then
        execs=$(grep -oE '^#[0-9]+' "$log" | tail -n 1 | tr -d '#')
    fi
    line="$t: ${execs:-?} executions in ${secs}s, exit $rc"
    echo "$line"
    summary+=("$line")
    if [ "$rc" -ne 0 ]; then
        failed+=("$t")
        grep -E 'panicked at|ERROR: libFuzzer|SUMMARY|Test unit written' "$log" | head -n 8
    fi
done

echo "== summary"
printf '%s\n' "${summary[@]}"
if [ "${#failed[@]}" -ne 0 ]; then
    echo "FAILED: ${failed[*]}" >&2
    exit 1
fi
