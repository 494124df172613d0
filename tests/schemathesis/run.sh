#!/usr/bin/env bash
# API conformance: schemathesis (a property-based tester driven by the
# OpenAPI document) against a live keygate's admin API. Every operation the
# served document lists is generated and sent, with an admin key; every
# answer must be no 5xx, and its status, content type, body and headers must
# be what the document says; a path's other methods must be 405 with `Allow`.
#
# Runs from any folder, by hand or from .ci/run:
#   tests/schemathesis/run.sh
# Knobs (environment): KEYGATE_BIN (default: cargo build, target/debug),
# SCHEMATHESIS_VENV (default target/schemathesis/venv), SCHEMATHESIS_MAX_EXAMPLES
# (default 50 per operation), SCHEMATHESIS_MAX_TIME (seconds: repeat the
# generating phases until spent, for a longer soak; default: one pass),
# SCHEMATHESIS_SEED (replay a run), SCHEMATHESIS_REPORT_DIR (write every
# request and answer there as HAR), SCHEMATHESIS_DEADLINE (seconds before the
# run is killed and fails; default 600).
#
# It never locks itself out: it authenticates with a key declared in the
# YAML config (clients.schemathesis.keys, a SHA-256 from `keygate keygen`).
# The API refuses to revoke or roll a YAML key (409: it is changed in the
# file), so whatever schemathesis sends, `force=true` included, that key
# stays valid; the run checks it still is at the end. The document is not
# bent for the tester: `force` stays in it, and keys the run creates itself
# may be revoked and rolled freely.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
[[ "$target" == /* ]] || target=$root/$target
venv=${SCHEMATHESIS_VENV:-$target/schemathesis/venv}
examples=${SCHEMATHESIS_MAX_EXAMPLES:-50}
deadline=${SCHEMATHESIS_DEADLINE:-600}
checks=${SCHEMATHESIS_CHECKS:-not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance,unsupported_method,allow_header_conformance,ignored_auth}

# 1. schemathesis, every package pinned (requirements.txt), in a venv of
#    its own; reused while the pins are unchanged.
if ! cmp -s "$here/requirements.txt" "$venv/keygate-requirements.txt"; then
  echo "== installing schemathesis into $venv"
  rm -rf "$venv"
  if python3 -m venv "$venv" 2>/dev/null; then
    pip=("$venv/bin/python" -m pip)
  else
    # Debian without python3-venv has no ensurepip: an empty venv, filled
    # by the system pip (pip >= 22.3 installs into another interpreter).
    rm -rf "$venv"
    python3 -m venv --without-pip "$venv"
    pip=(python3 -m pip --python "$venv/bin/python")
  fi
  "${pip[@]}" install --quiet --disable-pip-version-check --no-deps \
    -r "$here/requirements.txt"
  "${pip[@]}" check --disable-pip-version-check >/dev/null
  cp "$here/requirements.txt" "$venv/keygate-requirements.txt"
fi
st="$venv/bin/schemathesis"

# 2. keygate itself.
if [[ -z "${KEYGATE_BIN:-}" ]]; then
  (cd "$root" && cargo build --locked --quiet --bin keygate)
  KEYGATE_BIN=$target/debug/keygate
fi

# 3. A temp folder with an upstream that is also the token endpoint, a
#    config, and keygate on port 0 (it logs the ports it got).
work=$(mktemp -d "${TMPDIR:-/tmp}/keygate-schemathesis.XXXXXX")
keygate_pid=""
upstream_pid=""
cleanup() {
  local status=$?
  if [[ -n "$keygate_pid" ]]; then
    kill "$keygate_pid" 2>/dev/null || true
    wait "$keygate_pid" 2>/dev/null || true
  fi
  if [[ -n "$upstream_pid" ]]; then
    kill "$upstream_pid" 2>/dev/null || true
    wait "$upstream_pid" 2>/dev/null || true
  fi
  if [[ $status -ne 0 && -f "$work/keygate.err" ]]; then
    echo "== keygate's log (last 40 lines)" >&2
    tail -n 40 "$work/keygate.err" >&2
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

http_status() { # URL [KEY]: the status of a GET (curl may be missing on a clean machine)
  python3 - "$@" <<'PY'
import sys, urllib.error, urllib.request
req = urllib.request.Request(sys.argv[1])
if len(sys.argv) > 2:
    req.add_header("Authorization", "Bearer " + sys.argv[2])
try:
    print(urllib.request.urlopen(req, timeout=5).status)
except urllib.error.HTTPError as e:
    print(e.code)
except OSError:
    print(0)
PY
}

wait_for_file() { # FILE WHAT: until FILE is non-empty, for up to 15 s
  for _ in $(seq 150); do
    [[ -s "$1" ]] && return 0
    sleep 0.1
  done
  echo "$2 did not start" >&2
  return 1
}

python3 "$here/upstream.py" "$work/upstream.port" &
upstream_pid=$!
wait_for_file "$work/upstream.port" "the upstream"
upstream="http://127.0.0.1:$(cat "$work/upstream.port")"

keygen=$("$KEYGATE_BIN" keygen)
admin_key=$(sed -n 1p <<<"$keygen")
admin_sha=$(sed -n 's/^sha256: //p' <<<"$keygen")

# Names as in config/keygate.yaml, which the document's examples use: the
# examples phase then reaches real objects (a settable token, an
# http_request token to refresh, a client and role to make keys for).
cat >"$work/keygate.yaml" <<EOF
server: { listen: 127.0.0.1:0, shutdown_grace: 5s }
admin: { listen: 127.0.0.1:0 }
tokens:
  local-demo: { value: { literal: conformance-demo-value }, header: X-API-Key }
  local-runtime: { prefix: Bearer, header: Authorization }
  partner-oauth:
    type: http_request
    request: { method: POST, url: "$upstream/oauth/token", form: { grant_type: client_credentials } }
    response: { token: /access_token, expires_in: /expires_in }
    prefix: Bearer
    header: Authorization
connectors:
  local: { upstream: "$upstream", tokens: [local-demo] }
  partner: { upstream: "$upstream", tokens: [partner-oauth] }
roles:
  billing: { allow: [ { connector: local } ] }
  conformance-admin: { admin: true }
clients:
  billing-workflow: { roles: [billing] }
  schemathesis:
    description: The API conformance run; a YAML key, so the run cannot revoke it
    roles: [conformance-admin]
    keys: [ { name: schemathesis, sha256: "$admin_sha" } ]
EOF

"$KEYGATE_BIN" run --log-format json -c "$work/keygate.yaml" \
  >"$work/keygate.out" 2>"$work/keygate.err" &
keygate_pid=$!
admin=""
for _ in $(seq 150); do
  admin=$(python3 - "$work/keygate.err" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    try:
        f = json.loads(line)["fields"]
    except (ValueError, KeyError):
        continue
    if f.get("message") == "listening" and f.get("listener") == "admin":
        print(f["addr"])
PY
)
  [[ -n "$admin" ]] && break
  kill -0 "$keygate_pid" 2>/dev/null || { echo "keygate exited at start" >&2; exit 1; }
  sleep 0.1
done
[[ -n "$admin" ]] || { echo "keygate did not report its admin address" >&2; exit 1; }
base="http://$admin"
# Ready: the http_request token has been fetched.
ready=""
for _ in $(seq 75); do
  ready=$(http_status "$base/readyz")
  [[ "$ready" == 200 ]] && break
  sleep 0.2
done
[[ "$ready" == 200 ]] || { echo "keygate did not turn ready (/readyz: $ready)" >&2; exit 1; }

# 4. The run. The key goes through the environment, not argv.
args=(
  run "$base/api/v1/openapi.json"
  --checks "$checks"
  --max-examples "$examples"
  --generation-database none
  --request-timeout 10
  --no-color
)
[[ -n "${SCHEMATHESIS_MAX_TIME:-}" ]] && args+=(--max-time "$SCHEMATHESIS_MAX_TIME")
[[ -n "${SCHEMATHESIS_SEED:-}" ]] && args+=(--seed "$SCHEMATHESIS_SEED")
[[ -n "${SCHEMATHESIS_REPORT_DIR:-}" ]] && args+=(--report har --report-dir "$SCHEMATHESIS_REPORT_DIR")
echo "== schemathesis $("$st" --version | awk '{print $NF}') against $base (keygate pid $keygate_pid)"
started=$SECONDS
(
  cd "$work"
  KEYGATE_ADMIN_KEY=$admin_key timeout --signal=INT --kill-after=10 "$deadline" \
    "$st" --config-file "$here/schemathesis.toml" "${args[@]}"
)
echo "== schemathesis took $((SECONDS - started)) s"

# 5. The run did not lock itself out: its key still opens the admin API.
code=$(http_status "$base/api/v1/status" "$admin_key")
if [[ "$code" != 200 ]]; then
  echo "after the run the admin key answers $code, not 200: the run locked itself out" >&2
  exit 1
fi
echo "== the admin key still answers 200 after the run"
