#!/usr/bin/env bash
# Load on entra-gateway over loopback with wrk, against a real nginx in the same run (only
# 127.0.0.1 is touched; bounded in time: 2 + 4 × $PAIRS runs of $DURATION plus a few seconds of
# setup, 3.5 minutes with the defaults).
#
#   scripts/load-gateway.sh                         # DURATION=15s PAIRS=3 CONNECTIONS=64 THREADS=1
#   DURATION=5s PAIRS=1 scripts/load-gateway.sh     # a quick check that everything works
#
# Starts the emulator (demo directory), two nginx (Debian's nginx-light, /usr/sbin/nginx): the
# upstream (server 1, one process: `master_process off`) and the front (servers 2 and 3, 2
# workers), and entra-gateway (`server.workers = 2`, as load-api.sh's API on 2 cores, and as the
# front nginx) as a reverse proxy in front of the upstream, with one
# route, `GET /**` needing the app role Reports.Read of reports-api. The token is reader-job's
# (client credentials, scope api://reports-api/.default). Every run sends the same request bytes
# (the same `Authorization: Bearer …` header; forward-auth also gets X-Original-Method/-URI), so
# the runs differ only by what the server does with them. Six kinds of run, in this order, runs 2
# and 3 alternating $PAIRS times, then runs 4 and 5 alternating $PAIRS times (so that the
# machine's drift over the minutes falls on both sides of each ratio alike):
#
#   1. upstream direct         nginx server 1: `return 200 "ok\n";` (the floor of everything)
#   2. nginx proxy_pass        front nginx server 2 → server 1 (keepalive 64, HTTP/1.1), no auth; it
#                              drops Authorization as the gateway does by default
#   3. gateway proxy           entra-gateway `GET /anything` → server 1: token + policy + proxy
#   4. gateway /healthz        entra-gateway's own /healthz, same header (ignored there)
#   5. gateway forward-auth    entra-gateway `/forward-auth/nginx` (X-Original-Method: GET,
#                              X-Original-URI: /anything): token + policy, no upstream
#   6. nginx + auth_request    front nginx server 3: `auth_request` to the gateway's forward-auth
#                              (keepalive 64), identity headers copied, then → server 1, as the
#                              README's snippet (plus HTTP/1.1 keep-alive to both upstreams)
#
# Before the load each target must answer 200 once, and the gateway (proxy, forward-auth) and
# nginx + auth_request must answer 401 without a token; else exit 1 with a one-line reason.
#
# Prints a Markdown table, one row a kind of run: requests/s (wrk's, the mean over its runs), p50
# (the median) and p99 (the worst) latency in ms (wrk --latency's distribution), errors (wrk's
# non-2xx/3xx answers plus socket errors: connect, read, write, timeout), and for runs 2 to 5 the
# proxy's CPU time per request (/proc, over all of that kind's runs: the front nginx's workers
# for run 2, the gateway for runs 3 to 5). Then the ratios of mean requests/s, with each pair's
# own ratio and the target (recorded, not asserted:
# wrk, nginx and the gateway share the same cores, so ratios are noisy):
#   forward-auth / healthz                  what a token + policy decision costs (target >= 90%)
#   gateway proxy / nginx proxy_pass        the gateway against a plain proxy (target >= 80%)
#   gateway proxy / upstream direct         the gateway against no proxy at all
#   nginx + auth_request / nginx proxy_pass what forward-auth costs behind nginx
# and the first two again by CPU time per request (healthz's µs over forward-auth's; nginx's over
# the gateway's), which the scheduler's share-out between wrk and the servers does not move.
# Then the gateway's resident memory (VmRSS) before the load, its peak (sampled once a second
# through all the runs) and after (target: peak < 50 MiB), and the machine: cores, CPU model,
# load average before and after.
#
# Exit status: 0 when every run had 0 errors, 1 otherwise or when a check before the load fails,
# 2 on a usage or missing-tool problem. DURATION is wrk's (`15s`, `1m`) or plain seconds (`15`).
# Needs wrk and nginx (Debian: apt-get install wrk nginx-light), curl and python3. Builds the
# release binaries first.
set -euo pipefail

DURATION=${DURATION:-15s}
[[ $DURATION =~ ^[0-9]+$ ]] && DURATION="${DURATION}s"
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-1}
PAIRS=${PAIRS:-3}
[[ $PAIRS =~ ^[1-9][0-9]*$ ]] || { echo "load-gateway: PAIRS must be a whole number from 1, not '$PAIRS'" >&2; exit 2; }
GATEWAY_WORKERS=2
NGINX=${NGINX:-/usr/sbin/nginx}
[[ $# == 0 ]] || { echo "usage: scripts/load-gateway.sh (settings: DURATION, CONNECTIONS, THREADS, PAIRS)" >&2; exit 2; }

for tool in wrk curl python3; do
  command -v "$tool" >/dev/null || { echo "load-gateway: needs $tool (Debian: apt-get install $tool)" >&2; exit 2; }
done
[[ -x $NGINX ]] || { echo "load-gateway: needs nginx at $NGINX (Debian: apt-get install nginx-light)" >&2; exit 2; }

TENANT=72f1c3d4-5b6a-4c8d-9e0f-1a2b3c4d5e6f
REPORTS_ID=8b9c0d1e-2f3a-4b4c-9d5e-6f7a8b9c0d1e
READER_ID=0b9a1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
echo "load-gateway: building release binaries" >&2
cargo build --release --locked -q -p entra-emulator -p entra-gateway

SCRIPT=load-gateway
. scripts/lib/procs.sh

# --- the identity provider and the token ---------------------------------------------------
EMULATOR__DATA_DIR="$work/emulator" EMULATOR__SERVER__HTTPS_PORT=0 EMULATOR__LOG__FILTER=warn \
  target/release/entra-emulator serve --ready-file "$work/emulator.json" 2>"$work/emulator.log" &
emulator_pid=$!
pids+=("$emulator_pid")
wait_for "$work/emulator.json" "$emulator_pid" entra-emulator "$work/emulator.log"
idp=$(json "$work/emulator.json" public_url)
ca=$(json "$work/emulator.json" ca_cert)

answer=$(curl -sS --max-time 10 --cacert "$ca" "$idp/$TENANT/oauth2/v2.0/token" \
  -d grant_type=client_credentials -d client_id="$READER_ID" \
  --data-urlencode 'client_secret=rdr8Q~demo.reader.secret.not-for-production' \
  --data-urlencode 'scope=api://reports-api/.default') || fail "the emulator's token endpoint did not answer"
token=$(python3 -c '
import json, sys
try:
    body = json.loads(sys.argv[1])
except ValueError:
    sys.exit("load-gateway: the token endpoint did not answer JSON: " + sys.argv[1][:200])
if "access_token" not in body:
    sys.exit("load-gateway: no token for api://reports-api: %s: %s (rebuilt emulator? demo directory with reports-api?)"
             % (body.get("error"), str(body.get("error_description", "")).splitlines()[0][:200]))
print(body["access_token"])' "$answer") || exit 1

# --- ports, the gateway, nginx --------------------------------------------------------------
read -r direct_port proxy_port authreq_port <<<"$(free_ports 3)"
direct="http://127.0.0.1:$direct_port"
nginx_proxy="http://127.0.0.1:$proxy_port"
nginx_authreq="http://127.0.0.1:$authreq_port"

cat >"$work/gateway.toml" <<EOF
[server]
host = "127.0.0.1"
port = 0
workers = $GATEWAY_WORKERS

[upstream]
url = "$direct"

[entra]
authority_host = "$idp"
tenants = ["$TENANT"]

[auth]
audiences = ["$REPORTS_ID", "api://reports-api"]
allowed_clients = ["$READER_ID"]

[http]
extra_ca_file = "$ca"

[log]
filter = "warn"

[[routes]]
method = "GET"
path = "/**"
roles = ["Reports.Read"]
EOF
target/release/entra-gateway --config "$work/gateway.toml" serve --ready-file "$work/gateway.json" \
  2>"$work/gateway.log" &
gateway_pid=$!
pids+=("$gateway_pid")
wait_for "$work/gateway.json" "$gateway_pid" entra-gateway "$work/gateway.log"
gateway=$(json "$work/gateway.json" url)

# The identity headers copied from the gateway's 200, as the README's snippet.
identity=""
for pair in client_id:X-Entra-Client-Id tenant_id:X-Entra-Tenant-Id object_id:X-Entra-Object-Id \
  roles:X-Entra-Roles token_version:X-Entra-Token-Version token_id:X-Entra-Token-Id; do
  var=${pair%%:*} header=${pair#*:}
  upstream_var=$(tr 'A-Z-' 'a-z_' <<<"$header")
  identity+="      auth_request_set \$entra_$var \$upstream_http_$upstream_var;
      proxy_set_header $header \$entra_$var;
"
done
# Two nginx processes: the upstream alone (one process), and the front (servers 2 and 6) with
# 2 workers, as many as the gateway's: a proxied request crosses from one process to another in
# both the nginx and the gateway runs, and both proxies have the same parallelism.
. scripts/lib/nginx.sh
mkdir -p "$work/nginx-upstream" "$work/nginx"
{
  nginx_common "$work/nginx-upstream"
  cat <<EOF
master_process off;
worker_processes 1;
http {
$(nginx_http_common "$work/nginx-upstream")
  # 1. the upstream itself
  server {
    listen 127.0.0.1:$direct_port;
    location / { return 200 "ok\n"; }
  }
}
EOF
} >"$work/nginx-upstream/nginx.conf"
{
  nginx_common "$work/nginx"
  cat <<EOF
worker_processes 2;
http {
$(nginx_http_common "$work/nginx")
  upstream direct { server 127.0.0.1:$direct_port; keepalive 64; keepalive_requests 1000000; }
  upstream entra_gateway { server ${gateway#http://}; keepalive 64; keepalive_requests 1000000; }

  # 2. a plain reverse proxy, no auth
  server {
    listen 127.0.0.1:$proxy_port;
    location / {
      proxy_set_header Authorization "";
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass http://direct;
    }
  }

  # 6. auth_request to the gateway's forward-auth, then the same upstream
  server {
    listen 127.0.0.1:$authreq_port;
    location / {
      auth_request /_entra_auth;
      error_page 401 403 = @entra_refused;
$identity      proxy_set_header Authorization "";
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass http://direct;
    }
    location = /_entra_auth {
      internal;
      proxy_pass http://entra_gateway/forward-auth/nginx;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-Method \$request_method;
      proxy_set_header X-Original-URI \$request_uri;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
    location @entra_refused {
      rewrite ^ /forward-auth/nginx break;
      proxy_pass http://entra_gateway;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-Method \$request_method;
      proxy_set_header X-Original-URI \$request_uri;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
} >"$work/nginx/nginx.conf"
nginx_pids=()
for dir in "$work/nginx-upstream" "$work/nginx"; do
  "$NGINX" -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" >/dev/null 2>>"$dir/error.log" &
  nginx_pids+=($!)
  pids+=($!)
done
up=0
for _ in $(seq 1 100); do
  for pid in "${nginx_pids[@]}"; do
    kill -0 "$pid" 2>/dev/null ||
      fail "nginx exited at start: $(last_log "$work/nginx-upstream/error.log") $(last_log "$work/nginx/error.log")"
  done
  if curl -s -o /dev/null --max-time 1 "$direct/" && curl -s -o /dev/null --max-time 1 "$nginx_proxy/" \
    && curl -s -o /dev/null --max-time 1 "$nginx_authreq/"; then
    up=1
    break
  fi
  sleep 0.1
done
((up)) || fail "nginx was not listening within 10 s: $(last_log "$work/nginx/error.log")"

# --- each target answers once -------------------------------------------------------------
auth=(-H "Authorization: Bearer $token")
original=(-H "X-Original-Method: GET" -H "X-Original-URI: /anything")
status() { curl -s -o /dev/null --max-time 5 -w '%{http_code}' "$@" || true; }
expect() {
  local want=$1 what=$2 got
  shift 2
  got=$(status "$@")
  [[ $got == "$want" ]] || fail "$what answered ${got:-nothing} before the load, expected $want"
}
expect 200 "upstream direct (nginx)" "${auth[@]}" "$direct/anything"
expect 200 "nginx proxy_pass" "${auth[@]}" "$nginx_proxy/anything"
expect 200 "entra-gateway proxy with the token" "${auth[@]}" "$gateway/anything"
expect 401 "entra-gateway proxy without a token" "$gateway/anything"
expect 200 "entra-gateway /healthz" "${auth[@]}" "$gateway/healthz"
expect 200 "entra-gateway /forward-auth/nginx with the token" "${auth[@]}" "${original[@]}" "$gateway/forward-auth/nginx"
expect 401 "entra-gateway /forward-auth/nginx without a token" "${original[@]}" "$gateway/forward-auth/nginx"
expect 200 "nginx + auth_request with the token" "${auth[@]}" "$nginx_authreq/anything"
expect 401 "nginx + auth_request without a token" "$nginx_authreq/anything"

# --- the load -------------------------------------------------------------------------------
# One wrk run: prints "requests_per_sec p50_ms p99_ms errors requests" (scripts/wrk-summary.py);
# "0 - - ? 0" when wrk's output cannot be read (counted as a failed run).
run() {
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$@" 2>&1 | python3 scripts/wrk-summary.py
}

rss() { awk '/VmRSS/ {print $2}' "/proc/$gateway_pid/status" 2>/dev/null || true; }
cpus=$(nproc)
model=$(sed -n "s/^model name[[:space:]]*: //p" /proc/cpuinfo | head -1)
load_before=$(cut -d" " -f1-3 /proc/loadavg)
rss_start=$(rss)
echo "load-gateway: $((2 + 4 * PAIRS)) runs of $DURATION ($PAIRS pairs of each comparison), $CONNECTIONS connections, $THREADS wrk thread(s); entra-gateway with $GATEWAY_WORKERS workers" >&2

# The gateway's RSS once a second through all runs; the sampler stops within a second of the
# stop file.
( while [[ ! -e $work/stop ]] && kill -0 "$gateway_pid" 2>/dev/null; do rss >>"$work/rss"; sleep 1; done ) &
sampler=$!
pids+=("$sampler")

# The front nginx's workers, whose CPU time per request run 2 measures (the master only waits).
front_workers=$(pgrep -P "${nginx_pids[1]}" | tr '\n' ' ')
[[ -n $front_workers ]] || fail "the front nginx has no worker processes"

# Each run's line (run's, or cpu_run's with the CPU time) appended to $work/runs/NAME.
mkdir -p "$work/runs"
record() { # NAME command...
  local name=$1
  shift
  "$@" >>"$work/runs/$name"
}
record direct run "${auth[@]}" "$direct/anything"
# The compared runs alternate, pair after pair, so that the machine's drift over the minutes
# (other tenants of its cores) falls on both sides of each ratio alike.
for _ in $(seq 1 "$PAIRS"); do
  record nginx_proxy cpu_run "$front_workers" "${auth[@]}" "$nginx_proxy/anything"
  record gateway_proxy cpu_run "$gateway_pid" "${auth[@]}" "$gateway/anything"
done
for _ in $(seq 1 "$PAIRS"); do
  record healthz cpu_run "$gateway_pid" "${auth[@]}" "$gateway/healthz"
  record forward_auth cpu_run "$gateway_pid" "${auth[@]}" "${original[@]}" "$gateway/forward-auth/nginx"
done
record auth_request run "${auth[@]}" "$nginx_authreq/anything"

touch "$work/stop"
wait "$sampler" 2>/dev/null || true
rss_end=$(rss)
load_after=$(cut -d" " -f1-3 /proc/loadavg)
rss_peak=$(sort -n "$work/rss" 2>/dev/null | tail -1)
samples=$(wc -l <"$work/rss" 2>/dev/null || echo 0)
metrics=$(curl -s --max-time 5 "$gateway/metrics" || true)

echo
PYTHONPATH=scripts/lib python3 - "$work/runs" "${rss_start:-0}" "${rss_peak:-0}" "${rss_end:-0}" <<'PY'
import sys
from runs import Kind, header, read, write_errors
runs = sys.argv[1]
start, peak, end = (int(x or 0) / 1024 for x in sys.argv[2:5])
kinds = [
    ("direct", "1. upstream direct (nginx `return 200`)", ""),
    ("nginx_proxy", "2. nginx proxy_pass → upstream, no auth", " (nginx)"),
    ("gateway_proxy", "3. entra-gateway proxy → upstream, token + policy", ""),
    ("healthz", "4. entra-gateway /healthz, same header (ignored)", ""),
    ("forward_auth", "5. entra-gateway /forward-auth/nginx, token + policy", ""),
    ("auth_request", "6. nginx + auth_request (gateway) → upstream", ""),
]
k = {name: Kind(read(runs, name)) for name, _, _ in kinds}
print(header("proxy's CPU µs/request"))
for name, label, note in kinds:
    print(k[name].row(label, note))
print()

def ratio(name, num, den, target=None, pairs=None):
    value = num / den if den else float("nan")
    text = f"{name}: {value:.1%}"
    if pairs:
        text += " (pairs: " + ", ".join(f"{r:.1%}" for r in pairs) + ")"
    if target is not None:
        text += f"; target >= {target:.0%}: {'met' if value >= target else 'missed'}"
    print(text)

def pairwise(num, den):
    return [n / d for n, d in zip(k[num].rps, k[den].rps) if d]

ratio("forward-auth / healthz", k["forward_auth"].mean, k["healthz"].mean, 0.90,
      pairwise("forward_auth", "healthz"))
ratio("gateway proxy / nginx proxy_pass", k["gateway_proxy"].mean, k["nginx_proxy"].mean, 0.80,
      pairwise("gateway_proxy", "nginx_proxy"))
ratio("gateway proxy / upstream direct", k["gateway_proxy"].mean, k["direct"].mean)
ratio("nginx + auth_request / nginx proxy_pass", k["auth_request"].mean, k["nginx_proxy"].mean)
print("By the server's own CPU time per request (the inverse ratio of µs: what each request costs"
      " the process that serves it, whatever wrk and the scheduler make of the throughput):")
ratio("  forward-auth / healthz, gateway CPU", k["healthz"].cpu, k["forward_auth"].cpu)
ratio("  gateway proxy / nginx proxy_pass, each proxy's CPU", k["nginx_proxy"].cpu,
      k["gateway_proxy"].cpu)
print(f"\nentra-gateway resident memory (VmRSS): {start:.1f} MiB before the load, peak {peak:.1f} MiB"
      f" during it, {end:.1f} MiB after (target < 50 MiB: {'met' if 0 < peak < 50 else 'missed'})")
write_errors(runs, k.values())
PY
echo "entra-gateway: $GATEWAY_WORKERS workers (server.workers; its default is one per core); RSS sampled $samples times, once a second"
echo "nginx: the upstream one process (master_process off); the front (proxy_pass, auth_request) 2 workers, keepalive 64 to each upstream"
echo "machine: $cpus cores ($model), shared by wrk, nginx and the gateway; load average before: $load_before, after: $load_after"
grep -E '^gateway_(auth_outcomes|token_cache_hits|token_signature_checks)_total' <<<"$metrics" | grep -v ' 0$' || true

[[ $(cat "$work/runs/errors" 2>/dev/null) == 0 ]] || fail "errors under load (see the table)"
