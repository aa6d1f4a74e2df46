#!/usr/bin/env bash
# Load on one api-service: `GET /api/whoami` with a valid app token against `GET /healthz` (no
# token checked) on the same server in the same run, with wrk over loopback. Bounded: four runs
# of $DURATION each (default 20 s) plus start-up; only 127.0.0.1 is touched.
#
#   scripts/load-api.sh                 # DURATION=20s CONNECTIONS=64 THREADS=1
#
# Prints a Markdown table (requests/s, p50/p99 latency, errors) and the authenticated/open ratio,
# and the API's resident memory before and after. Needs wrk (Debian: apt-get install wrk) and curl.
set -euo pipefail

DURATION=${DURATION:-20s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-1}

for tool in wrk curl python3; do
  command -v "$tool" >/dev/null || { echo "load-api: needs $tool (Debian: apt-get install $tool)" >&2; exit 2; }
done

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
echo "load-api: building release binaries" >&2
cargo build --release --locked -q -p entra-emulator -p api-service

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

wait_for() {
  for _ in $(seq 1 300); do
    [[ -s "$1" ]] && return 0
    sleep 0.1
  done
  echo "load-api: $2 did not start" >&2
  exit 1
}

json() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }

EMULATOR__DATA_DIR="$work/emulator" EMULATOR__SERVER__HTTPS_PORT=0 EMULATOR__LOG__FILTER=warn \
  target/release/entra-emulator serve --ready-file "$work/emulator.json" &
pids+=($!)
wait_for "$work/emulator.json" "entra-emulator"
idp=$(json "$work/emulator.json" public_url)
ca=$(json "$work/emulator.json" ca_cert)

token=$(curl -sS --cacert "$ca" "$idp/72f1c3d4-5b6a-4c8d-9e0f-1a2b3c4d5e6f/oauth2/v2.0/token" \
  -d grant_type=client_credentials -d client_id=0b9a1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d \
  --data-urlencode 'client_secret=rdr8Q~demo.reader.secret.not-for-production' \
  --data-urlencode 'scope=api://tasks-api/.default' \
  | python3 -c "import json,sys; print(json.load(sys.stdin)['access_token'])")

API__SERVER__PORT=0 API__ENTRA__AUTHORITY_HOST="$idp" API__HTTP__EXTRA_CA_FILE="$ca" \
  API__DATABASE__PATH="$work/tasks.db" API__LOG__FILTER=warn \
  target/release/api-service --config api-service/demo/api.toml serve --ready-file "$work/api.json" &
api_pid=$!
pids+=($api_pid)
wait_for "$work/api.json" "api-service"
api=$(json "$work/api.json" url)

status=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "$api/api/whoami")
[[ "$status" == 200 ]] || { echo "load-api: whoami answered $status before the load" >&2; exit 1; }
rss() { awk '/VmRSS/ {print $2}' "/proc/$api_pid/status"; }
rss_start=$(rss)

# One wrk run: prints "requests_per_sec p50_ms p99_ms errors".
run() {
  local out
  out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$@")
  python3 - "$out" <<'PY'
import re, sys
out = sys.argv[1]
def ms(label):
    m = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    value, unit = float(m.group(1)), m.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
errors = (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, sock.groups())) if sock else 0)
print(f"{rps:.0f} {ms('50'):.2f} {ms('99'):.2f} {errors}")
PY
}

echo "load-api: $DURATION per run, $CONNECTIONS connections, $THREADS wrk thread(s)" >&2
# /healthz twice: bare, and carrying the very same Authorization header (which it ignores), so
# that the second comparison isolates what validation and policy cost from what reading a
# 1-2 KiB header costs any route.
auth=(-H "Authorization: Bearer $token")
read -r b b50 b99 berr <<<"$(run "$api/healthz")"
read -r h1 h1p50 h1p99 h1err <<<"$(run "${auth[@]}" "$api/healthz")"
read -r w w50 w99 werr <<<"$(run "${auth[@]}" "$api/api/whoami")"
read -r h2 h2p50 h2p99 h2err <<<"$(run "${auth[@]}" "$api/healthz")"
rss_end=$(rss)

echo
echo "| route | requests/s | p50 ms | p99 ms | errors |"
echo "|---|---:|---:|---:|---:|"
echo "| GET /healthz, no header | $b | $b50 | $b99 | $berr |"
echo "| GET /healthz, same header as whoami (ignored), before | $h1 | $h1p50 | $h1p99 | $h1err |"
echo "| GET /api/whoami, app token validated | $w | $w50 | $w99 | $werr |"
echo "| GET /healthz, same header as whoami (ignored), after | $h2 | $h2p50 | $h2p99 | $h2err |"
python3 - "$w" "$h1" "$h2" "$b" <<'PY'
import sys
w, h1, h2, b = map(float, sys.argv[1:])
print(f"\nwhoami / healthz with the same request bytes: {w / ((h1 + h2) / 2):.1%} (mean of the before and after runs)")
print(f"whoami / bare healthz: {w / b:.1%}")
PY
echo "api-service resident memory: ${rss_start} KiB before, ${rss_end} KiB after"
metrics=$(curl -s "$api/metrics")
echo "$metrics" | grep -E '^api_token_(cache_hits|signature_checks)_total' || true
[[ "$werr" == 0 && "$h1err" == 0 && "$h2err" == 0 && "$berr" == 0 ]] || { echo "load-api: errors under load" >&2; exit 1; }
