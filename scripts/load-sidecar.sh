#!/usr/bin/env bash
# Load on the caller's token sidecar over loopback with wrk, against the same requests sent
# directly with a token in hand, in the same run (only 127.0.0.1 is touched; bounded in time:
# seven runs of $DURATION plus a few seconds of setup).
#
#   scripts/load-sidecar.sh                 # DURATION=15s CONNECTIONS=64 THREADS=1
#   DURATION=5s scripts/load-sidecar.sh     # a quick check that everything works
#
# Starts the emulator (demo directory), the tasks API (api-service/demo/api.toml), an nginx
# (Debian's nginx-light, one process: `return 200`) and caller-service with the reader's identity
# and a sidecar (`sidecar.workers = 2`) with two upstreams: `tasks` → the API, `static` → nginx.
# The direct runs send the reader's token (client credentials, api://tasks-api/.default, taken
# with curl before the load), the sidecar runs send nothing: the sidecar adds the same token. The
# runs, in this order, alternating so that a drift of the machine shows in both:
#
#   1. API direct           GET /api/whoami with the token     (token validated, JSON answer)
#   2. API via sidecar      GET /tasks/api/whoami              (sidecar → the API)
#   3. API direct           again
#   4. API via sidecar      again
#   5. nginx direct         GET / with the token header        (the floor: nothing checks it)
#   6. nginx via sidecar    GET /static/                       (what the sidecar alone costs)
#   7. API via nginx        GET /tasks/api/whoami to a second nginx (2 workers, keepalive 64)
#                           that adds the same token, fixed in its configuration: the best a
#                           forwarding hop does on this machine, with no token manager at all
#
# Before the load each target must answer 200 once; else exit 1 with a one-line reason.
# Prints a Markdown table (requests/s, p50/p99 latency, errors: non-2xx/3xx plus socket errors),
# the ratios via sidecar / direct (the API's the mean of the two pairs; target >= 70%, recorded,
# not asserted: wrk, the API, nginx and the sidecar share the same cores), nginx as the hop / direct
# and the sidecar / nginx as the hop, the sidecar's resident
# memory (VmRSS) before, at its peak (sampled once a second) and after, its identity-provider
# requests (1 expected: one token for the whole run), and the machine.
#
# Exit status: 0 when every run had 0 errors, 1 otherwise or when a check before the load fails,
# 2 on a usage or missing-tool problem. Needs wrk, nginx (Debian: apt-get install wrk
# nginx-light), curl and python3. Builds the release binaries first.
set -euo pipefail

DURATION=${DURATION:-15s}
[[ $DURATION =~ ^[0-9]+$ ]] && DURATION="${DURATION}s"
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-1}
NGINX=${NGINX:-/usr/sbin/nginx}
[[ $# == 0 ]] || { echo "usage: scripts/load-sidecar.sh (settings: DURATION, CONNECTIONS, THREADS)" >&2; exit 2; }
for tool in wrk curl python3; do
  command -v "$tool" >/dev/null || { echo "load-sidecar: needs $tool (Debian: apt-get install $tool)" >&2; exit 2; }
done
[[ -x $NGINX ]] || { echo "load-sidecar: needs nginx at $NGINX (Debian: apt-get install nginx-light)" >&2; exit 2; }

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
echo "load-sidecar: building release binaries" >&2
cargo build --release --locked -q -p entra-emulator -p api-service -p caller-service

SCRIPT=load-sidecar
. scripts/lib/procs.sh

EMULATOR__DATA_DIR="$work/emulator" EMULATOR__SERVER__HTTPS_PORT=0 EMULATOR__LOG__FILTER=warn \
  target/release/entra-emulator serve --ready-file "$work/emulator.json" 2>"$work/emulator.log" &
pids+=($!)
wait_for "$work/emulator.json" "$!" entra-emulator "$work/emulator.log"
idp=$(json "$work/emulator.json" public_url)
ca=$(json "$work/emulator.json" ca_cert)

API__SERVER__PORT=0 API__ENTRA__AUTHORITY_HOST="$idp" API__HTTP__EXTRA_CA_FILE="$ca" \
  API__DATABASE__PATH="$work/tasks.db" API__LOG__FILTER=warn \
  target/release/api-service --config api-service/demo/api.toml serve --ready-file "$work/api.json" \
  2>"$work/api.log" &
pids+=($!)
wait_for "$work/api.json" "$!" api-service "$work/api.log"
api=$(json "$work/api.json" url)

read -r nginx_port operator_port sidecar_port <<<"$(free_ports 3)"
static="http://127.0.0.1:$nginx_port"
. scripts/lib/nginx.sh
mkdir -p "$work/nginx"
{
  nginx_common "$work/nginx"
  cat <<NGINX_CONF
master_process off;
worker_processes 1;
http {
$(nginx_http_common "$work/nginx")
  server { listen 127.0.0.1:$nginx_port; location / { return 200 "ok\n"; } }
}
NGINX_CONF
} >"$work/nginx/nginx.conf"
"$NGINX" -p "$work/nginx" -c "$work/nginx/nginx.conf" -e "$work/nginx/error.log" >/dev/null 2>&1 &
pids+=($!)

# The demo caller's identity (caller-service/demo/caller.toml), pointed at this run's emulator.
{
  demo_identity "$idp"
  cat <<CALLER_TOML
[http]
extra_ca_file = "$ca"

[server]
port = $operator_port

[sidecar]
port = $sidecar_port
workers = 2

[[sidecar.upstreams]]
name = "tasks"
url = "$api"
scope = "api://tasks-api/.default"

[[sidecar.upstreams]]
name = "static"
url = "$static"
scope = "api://tasks-api/.default"
CALLER_TOML
} >"$work/caller.toml"
CALLER__LOG__FILTER=warn target/release/caller-service --config "$work/caller.toml" run 2>"$work/caller.log" &
caller_pid=$!
pids+=("$caller_pid")
operator="http://127.0.0.1:$operator_port"
sidecar="http://127.0.0.1:$sidecar_port"
ready=0
for _ in $(seq 1 300); do
  if [[ $(curl -s -o /dev/null -w '%{http_code}' "$operator/readyz" || true) == 200 ]]; then
    ready=1
    break
  fi
  kill -0 "$caller_pid" 2>/dev/null || fail "caller-service exited at start: $(last_log "$work/caller.log")"
  sleep 0.1
done
((ready)) || fail "caller-service was not ready within 30 s: $(last_log "$work/caller.log")"

token=$(curl -sS --max-time 10 --cacert "$ca" "$idp/72f1c3d4-5b6a-4c8d-9e0f-1a2b3c4d5e6f/oauth2/v2.0/token" \
  -d grant_type=client_credentials -d client_id=0b9a1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d \
  --data-urlencode 'client_secret=rdr8Q~demo.reader.secret.not-for-production' \
  --data-urlencode 'scope=api://tasks-api/.default' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])') || fail "no token from the emulator"
auth=(-H "Authorization: Bearer $token")

# 7. nginx as the forwarding hop: the same token, fixed in its configuration.
read -r egress_port <<<"$(free_ports 1)"
egress="http://127.0.0.1:$egress_port"
mkdir -p "$work/egress"
{
  nginx_common "$work/egress"
  cat <<EGRESS_CONF
worker_processes 2;
http {
$(nginx_http_common "$work/egress")
  upstream tasks { server ${api#http://}; keepalive 64; keepalive_requests 1000000; }
  server {
    listen 127.0.0.1:$egress_port;
    location /tasks/ {
      proxy_set_header Authorization "Bearer $token";
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass http://tasks/;
    }
  }
}
EGRESS_CONF
} >"$work/egress/nginx.conf"
"$NGINX" -p "$work/egress" -c "$work/egress/nginx.conf" -e "$work/egress/error.log" >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 1 50); do
  [[ $(curl -s -o /dev/null -w '%{http_code}' "$egress/tasks/api/whoami" || true) == 200 ]] && break
  sleep 0.1
done
status() { curl -s -o /dev/null --max-time 5 -w '%{http_code}' "$@" || true; }
expect() {
  local what=$1 got
  shift
  got=$(status "$@")
  [[ $got == 200 ]] || fail "$what answered ${got:-nothing} before the load, expected 200"
}
expect "API direct" "${auth[@]}" "$api/api/whoami"
expect "API via the sidecar" "$sidecar/tasks/api/whoami"
expect "nginx direct" "${auth[@]}" "$static/"
expect "nginx via the sidecar" "$sidecar/static/"
expect "API via nginx as the hop" "$egress/tasks/api/whoami"

run() { wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$@" 2>&1 | python3 scripts/wrk-summary.py; }
rss() { awk '/VmRSS/ {print $2}' "/proc/$caller_pid/status" 2>/dev/null || true; }
idp_requests() {
  curl -s "$operator/metrics" | awk '/^caller_idp_requests_total\{/ {sum += $NF} END {printf "%d\n", sum}'
}
cpus=$(nproc)
model=$(sed -n "s/^model name[[:space:]]*: //p" /proc/cpuinfo | head -1)
load_before=$(cut -d" " -f1-3 /proc/loadavg)
rss_start=$(rss)
echo "load-sidecar: 7 runs of $DURATION, $CONNECTIONS connections, $THREADS wrk thread(s); sidecar with 2 workers" >&2
( while [[ ! -e $work/stop ]] && kill -0 "$caller_pid" 2>/dev/null; do rss >>"$work/rss"; sleep 1; done ) &
sampler=$!
pids+=("$sampler")

read -r a1 a1_50 a1_99 a1e _ <<<"$(run "${auth[@]}" "$api/api/whoami")"
read -r s1 s1_50 s1_99 s1e _ <<<"$(run "$sidecar/tasks/api/whoami")"
read -r a2 a2_50 a2_99 a2e _ <<<"$(run "${auth[@]}" "$api/api/whoami")"
read -r s2 s2_50 s2_99 s2e _ <<<"$(run "$sidecar/tasks/api/whoami")"
read -r n n50 n99 ne _ <<<"$(run "${auth[@]}" "$static/")"
read -r m m50 m99 me _ <<<"$(run "$sidecar/static/")"
read -r x x50 x99 xe _ <<<"$(run "$egress/tasks/api/whoami")"

touch "$work/stop"
wait "$sampler" 2>/dev/null || true
rss_end=$(rss)
rss_peak=$(sort -n "$work/rss" 2>/dev/null | tail -1)
load_after=$(cut -d" " -f1-3 /proc/loadavg)

echo
echo "| run | requests/s | p50 ms | p99 ms | errors |"
echo "|---|---:|---:|---:|---:|"
echo "| 1. API direct, token in hand (\`GET /api/whoami\`) | $a1 | $a1_50 | $a1_99 | $a1e |"
echo "| 2. API via the sidecar (\`GET /tasks/api/whoami\`) | $s1 | $s1_50 | $s1_99 | $s1e |"
echo "| 3. API direct, again | $a2 | $a2_50 | $a2_99 | $a2e |"
echo "| 4. API via the sidecar, again | $s2 | $s2_50 | $s2_99 | $s2e |"
echo "| 5. nginx \`return 200\` direct, token header | $n | $n50 | $n99 | $ne |"
echo "| 6. nginx via the sidecar | $m | $m50 | $m99 | $me |"
echo "| 7. API via nginx as the hop, token fixed in its config | $x | $x50 | $x99 | $xe |"
echo
python3 - "$a1" "$s1" "$a2" "$s2" "$n" "$m" "$x" "${rss_start:-0}" "${rss_peak:-0}" "${rss_end:-0}" <<'PY'
import sys
a1, s1, a2, s2, n, m, x = map(float, sys.argv[1:8])
start, peak, end = (int(x or 0) / 1024 for x in sys.argv[8:11])
def share(num, den):
    return num / den if den else float("nan")
api = (share(s1, a1) + share(s2, a2)) / 2
print(f"API via sidecar / API direct: {share(s1, a1):.1%} and {share(s2, a2):.1%}, mean {api:.1%}"
      f" (target >= 70%: {'met' if api >= 0.70 else 'missed'})")
print(f"nginx via sidecar / nginx direct: {share(m, n):.1%} (the sidecar's own cost, nothing behind it)")
print(f"API via nginx as the hop / API direct: {share(x, (a1 + a2) / 2):.1%} (what a forwarding hop allows here)")
print(f"API via sidecar / API via nginx as the hop: {share((s1 + s2) / 2, x):.1%}")
print(f"sidecar (caller-service) resident memory (VmRSS): {start:.1f} MiB before the load,"
      f" peak {peak:.1f} MiB during it, {end:.1f} MiB after")
PY
echo "identity-provider requests by the sidecar for the whole run: $(idp_requests)"
echo "machine: $cpus cores ($model), shared by wrk, the API, nginx and the sidecar; load average before: $load_before, after: $load_after"
errors=0
for e in "$a1e" "$s1e" "$a2e" "$s2e" "$ne" "$me" "$xe"; do [[ $e == 0 ]] || errors=1; done
((errors == 0)) || fail "errors under load (see the table)"
