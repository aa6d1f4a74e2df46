#!/usr/bin/env bash
# Load on one api-service over loopback with wrk (only 127.0.0.1 is touched; bounded in time).
#
#   scripts/load-api.sh [compare]       # DURATION=20s PAIRS=3 CONNECTIONS=64 THREADS=1
#   DURATION=60 scripts/load-api.sh sustained
#
# compare (the default): `GET /api/whoami` with a valid app token against `GET /healthz` (no
# token checked) on the same server in the same run, $DURATION a run (default 20 s): a bare
# healthz, then $PAIRS (default 3) pairs of healthz with the same header and whoami alternating,
# then a last healthz. Prints a Markdown table (requests/s, p50/p99 latency, errors, and the API's
# CPU time per request, from /proc) and the authenticated/open ratios, by throughput (with each
# whoami run's own against the healthz runs either side) and by CPU time per request, and the
# API's resident memory before and after.
#
# sustained: one run of $DURATION (default 60 s) of `GET /api/whoami` with a valid app token.
# Records requests/s, p50/p99 latency, errors as wrk sees them (non-2xx/3xx answers plus socket
# errors: connect, read, write, timeout) and as the API counts them (whoami answers other than
# 200, token checks other than `accepted`), and the API's resident memory (VmRSS) before the load,
# every second during it, and after it. Prints `resilience: sustained load: ...` lines. Exit
# status 1 when a bound is broken: any error on either side, or RSS after the load above RSS
# before it plus $RSS_GROWTH_MIB (default 8 MiB: runs of 60 s grew it by about 2 MiB, all in the
# first seconds (64 connections' buffers, allocator arenas), flat after; a leak of 4 bytes a
# request would break it within a 60 s run at 35,000 requests/s).
#
# DURATION is wrk's (`60s`, `1m`) or plain seconds (`60`). Needs wrk (Debian: apt-get install
# wrk), curl and python3. Builds the release binaries first.
set -euo pipefail

MODE=${1:-compare}
case $MODE in
  compare) DURATION=${DURATION:-20s} ;;
  sustained) DURATION=${DURATION:-60s} ;;
  *) echo "usage: scripts/load-api.sh [compare|sustained]" >&2; exit 2 ;;
esac
[[ $DURATION =~ ^[0-9]+$ ]] && DURATION="${DURATION}s"
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-1}
RSS_GROWTH_MIB=${RSS_GROWTH_MIB:-8}
PAIRS=${PAIRS:-3}
[[ $PAIRS =~ ^[1-9][0-9]*$ ]] || { echo "load-api: PAIRS must be a whole number from 1, not '$PAIRS'" >&2; exit 2; }

for tool in wrk curl python3; do
  command -v "$tool" >/dev/null || { echo "load-api: needs $tool (Debian: apt-get install $tool)" >&2; exit 2; }
done

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
echo "load-api: building release binaries" >&2
cargo build --release --locked -q -p entra-emulator -p api-service

SCRIPT=load-api
. scripts/lib/procs.sh

EMULATOR__DATA_DIR="$work/emulator" EMULATOR__SERVER__HTTPS_PORT=0 EMULATOR__LOG__FILTER=warn \
  target/release/entra-emulator serve --ready-file "$work/emulator.json" 2>"$work/emulator.log" &
pids+=($!)
wait_for "$work/emulator.json" "$!" "entra-emulator" "$work/emulator.log"
idp=$(json "$work/emulator.json" public_url)
ca=$(json "$work/emulator.json" ca_cert)

token=$(curl -sS --cacert "$ca" "$idp/72f1c3d4-5b6a-4c8d-9e0f-1a2b3c4d5e6f/oauth2/v2.0/token" \
  -d grant_type=client_credentials -d client_id=0b9a1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d \
  --data-urlencode 'client_secret=rdr8Q~demo.reader.secret.not-for-production' \
  --data-urlencode 'scope=api://tasks-api/.default' \
  | python3 -c "import json,sys; print(json.load(sys.stdin)['access_token'])")

API__SERVER__PORT=0 API__ENTRA__AUTHORITY_HOST="$idp" API__HTTP__EXTRA_CA_FILE="$ca" \
  API__DATABASE__PATH="$work/tasks.db" API__LOG__FILTER=warn \
  target/release/api-service --config api-service/demo/api.toml serve --ready-file "$work/api.json" \
  2>"$work/api.log" &
api_pid=$!
pids+=($api_pid)
wait_for "$work/api.json" "$api_pid" "api-service" "$work/api.log"
api=$(json "$work/api.json" url)

status=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "$api/api/whoami")
[[ "$status" == 200 ]] || { echo "load-api: whoami answered $status before the load" >&2; exit 1; }
rss() { awk '/VmRSS/ {print $2}' "/proc/$api_pid/status"; }
rss_start=$(rss)

# One wrk run: prints "requests_per_sec p50_ms p99_ms errors requests" (scripts/wrk-summary.py).
run() {
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$@" 2>&1 | python3 scripts/wrk-summary.py
}

# The API's counters, from /metrics: "whoami_total whoami_not_200 auth_accepted auth_refused".
counters() {
  curl -s "$api/metrics" | python3 -c '
import re, sys
whoami = not200 = accepted = refused = 0
for line in sys.stdin:
    m = re.match(r"(\w+)\{([^}]*)\} (\S+)$", line.strip())
    if not m:
        continue
    name, labels, value = m.group(1), dict(re.findall(r"(\w+)=\"([^\"]*)\"", m.group(2))), int(float(m.group(3)))
    if name == "api_http_requests_total" and labels.get("route") == "/api/whoami":
        whoami += value
        not200 += value if labels.get("status") != "200" else 0
    elif name == "api_auth_outcomes_total":
        accepted += value if labels.get("outcome") == "accepted" else 0
        refused += value if labels.get("outcome") != "accepted" else 0
print(whoami, not200, accepted, refused)'
}

sustained() {
  local cpus load model
  cpus=$(nproc)
  load=$(cut -d" " -f1-3 /proc/loadavg)
  model=$(sed -n "s/^model name[[:space:]]*: //p" /proc/cpuinfo | head -1)
  echo "load-api: sustained, $DURATION, $CONNECTIONS connections, $THREADS wrk thread(s); $cpus cores ($model), load average before: $load" >&2
  read -r whoami0 not2000 accepted0 refused0 <<<"$(counters)"
  # RSS once a second while wrk runs; the sampler stops itself within a second of the stop file.
  ( while [[ ! -e $work/stop ]] && kill -0 "$api_pid" 2>/dev/null; do rss >>"$work/rss"; sleep 1; done ) &
  pids+=($!)
  local sampler=$!
  read -r rps p50 p99 errors requests <<<"$(run "${auth[@]}" "$api/api/whoami")"
  touch "$work/stop"
  wait "$sampler" 2>/dev/null || true
  rss_end=$(rss)
  read -r whoami1 not2001 accepted1 refused1 <<<"$(counters)"
  local served=$((whoami1 - whoami0)) not200=$((not2001 - not2000)) refused=$((refused1 - refused0))
  local accepted=$((accepted1 - accepted0))
  local peak warm samples
  peak=$(sort -n "$work/rss" | tail -1)
  samples=$(wc -l <"$work/rss")
  warm=$(sed -n 10p "$work/rss")
  local bound=$((rss_start + RSS_GROWTH_MIB * 1024))
  mib() { awk -v kib="$1" 'BEGIN { printf "%.1f", kib / 1024 }'; }

  echo
  echo "| route | duration | requests | requests/s | p50 ms | p99 ms | wrk errors | API: non-200 / refused |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|"
  echo "| GET /api/whoami, app token validated | $DURATION | $requests | $rps | $p50 | $p99 | $errors | $not200 / $refused |"
  echo
  echo "api-service resident memory: $(mib "$rss_start") MiB before, $(mib "${warm:-$rss_start}") MiB after 10 s, peak $(mib "$peak") MiB ($samples samples, 1 a second), $(mib "$rss_end") MiB after; bound $(mib "$bound") MiB (before + $RSS_GROWTH_MIB MiB)"
  echo "machine: $cpus cores ($model), shared; load average before the run: $load, after: $(cut -d" " -f1-3 /proc/loadavg)"
  echo "resilience: sustained load: $DURATION of GET /api/whoami with a valid app token ($CONNECTIONS connections over loopback, wrk and the API on the same $cpus shared cores): $requests requests, $rps requests/s, p50 $p50 ms, p99 $p99 ms"
  echo "resilience: sustained load: errors: wrk $errors (non-2xx/3xx and socket errors); API $not200 whoami answers other than 200, $refused tokens refused, $accepted accepted ($served whoami requests counted, in-flight ones at the end included)"
  echo "resilience: sustained load: API resident memory $(mib "$rss_start") MiB before, $(mib "${warm:-$rss_start}") MiB after 10 s, peak $(mib "$peak") MiB, $(mib "$rss_end") MiB after (bound: after <= before + $RSS_GROWTH_MIB MiB)"
  echo "resilience: sustained load: machine: $cpus shared cores ($model), load average $load before the run (the cores are shared with other builds: throughput and p99 are noisy)"

  local broken=0
  if [[ $errors != 0 || $not200 != 0 || $refused != 0 ]]; then
    echo "load-api: errors under sustained load (wrk $errors, API non-200 $not200, refused $refused)" >&2
    broken=1
  fi
  if ((served < requests)); then
    echo "load-api: the API counted $served whoami requests, wrk $requests" >&2
    broken=1
  fi
  if ((rss_end > bound)); then
    echo "load-api: resident memory grew from $rss_start KiB to $rss_end KiB (bound $bound KiB)" >&2
    broken=1
  fi
  return $broken
}

auth=(-H "Authorization: Bearer $token")
if [[ $MODE == sustained ]]; then
  sustained
  exit $?
fi

echo "load-api: $((2 + 2 * PAIRS)) runs of $DURATION, $CONNECTIONS connections, $THREADS wrk thread(s)" >&2
# /healthz both bare and carrying the very same Authorization header (which it ignores), so that
# the second comparison isolates what validation and policy cost from what reading a 1-2 KiB
# header costs any route.
mkdir -p "$work/runs"
cpu_run "$api_pid" "$api/healthz" >>"$work/runs/bare"
# healthz with the header and whoami alternate, pair after pair, and a last healthz closes the
# series: the machine's drift over the minutes falls on both sides of the ratio alike.
for _ in $(seq 1 "$PAIRS"); do
  cpu_run "$api_pid" "${auth[@]}" "$api/healthz" >>"$work/runs/healthz"
  cpu_run "$api_pid" "${auth[@]}" "$api/api/whoami" >>"$work/runs/whoami"
done
cpu_run "$api_pid" "${auth[@]}" "$api/healthz" >>"$work/runs/healthz"
rss_end=$(rss)

echo
PYTHONPATH=scripts/lib python3 - "$work/runs" <<'PY'
import sys
from runs import Kind, header, number, read, write_errors
runs = sys.argv[1]
bare, healthz, whoami = (Kind(read(runs, name)) for name in ("bare", "healthz", "whoami"))
print(header("API CPU µs/request").replace("| run |", "| route |", 1))
print(bare.row("GET /healthz, no header"))
print(healthz.row("GET /healthz, same header as whoami (ignored)"))
print(whoami.row("GET /api/whoami, app token validated"))
# Each whoami run against the mean of the healthz runs either side of it.
h, w = healthz.rps, whoami.rps
pairs = [w[i] / ((h[i] + h[i + 1]) / 2) for i in range(len(w))]
print(f"\nwhoami / healthz with the same request bytes: {whoami.mean / healthz.mean:.1%}"
      f" (each run against the healthz runs either side: {', '.join(f'{r:.1%}' for r in pairs)})")
print(f"whoami / bare healthz: {whoami.mean / bare.mean:.1%}")
print(f"whoami / healthz by the API's CPU time per request: {healthz.cpu / whoami.cpu:.1%}"
      f" (healthz {healthz.cpu:.2f} µs, whoami {whoami.cpu:.2f} µs)")
write_errors(runs, [bare, healthz, whoami])
PY
echo "api-service resident memory: ${rss_start} KiB before, ${rss_end} KiB after"
metrics=$(curl -s "$api/metrics")
echo "$metrics" | grep -E '^api_token_(cache_hits|signature_checks)_total' || true
[[ $(cat "$work/runs/errors" 2>/dev/null) == 0 ]] || { echo "load-api: errors under load" >&2; exit 1; }
