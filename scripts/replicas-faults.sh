#!/usr/bin/env bash
# The tasks API scaled out (docker-compose.replicas.yml: three replicas on one PostgreSQL behind
# HAProxy, the emulator, a reader and a writer calling every second) under five faults, with a
# probe from the host (scripts/replicas_probe.py: whoami and a create with its own external_id,
# five of each a second, one repeat after no answer or a 502/503/504) as further load:
#
#   1. kill -9 of one replica's process, in the middle of a burst of whoami calls: no job run or
#      probe call fails beyond its one repeat, no call of the burst fails at all; the replica is
#      restarted by Docker and HAProxy sends to it again.
#   2. one replica cut off from the identity provider (its network to the emulator disconnected)
#      past its key refresh: it serves on its last good keys, readiness turns to stale only past
#      keys.max_stale_secs, HAProxy then takes it out; reconnected, it is back.
#   3. the database cut off (its network disconnected): task routes answer 503 with Retry-After,
#      whoami 200; healed, every acknowledged create is there, each once.
#   4. a rolling restart of the three replicas (SIGTERM, drain, start, wait until in rotation):
#      no call fails, not even before its repeat.
#   5. the balancer's own view (its log: every request with the replica it went to, and every
#      replica's DOWN and UP): no request went to a replica while HAProxy had it out.
#
#   bash scripts/replicas-faults.sh            # the checks (run by .ci/run)
#   bash scripts/replicas-faults.sh --bench    # then: whoami through HAProxy, 3 vs 1 replicas,
#                                              # and straight to one replica, with wrk
#
# A project of its own on free host ports; everything is removed afterwards (`down -v`). Needs a
# Docker Engine with the images (scripts/docker-base-images.sh where nothing can be pulled) and
# docker-compose 1.29 or Compose v2. Every wait is bounded. Prints one line per figure, read into
# RESILIENCE.md.
set -euo pipefail
cd "$(dirname "$0")/.."

BENCH=0
[[ ${1:-} == --bench ]] && BENCH=1
PROJECT=${FAULTS_PROJECT:-m2m-entra-replicas-$$}
BUILD_TIMEOUT=${FAULTS_BUILD_TIMEOUT:-3000}
FILE=docker-compose.replicas.yml
TENANT=72f1c3d4-5b6a-4c8d-9e0f-1a2b3c4d5e6f
# writer-job's DEMO credentials (deploy/emulator/writer.env): the probe's identity.
WRITER_ID=1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f
WRITER_SECRET_FILE=deploy/emulator/writer.env
# The replicas' stale bound and drain, as deploy/replicas/api.env sets them.
API_ENV=deploy/replicas/api.env
MAX_STALE_SECS=$(sed -n 's/^API__KEYS__MAX_STALE_SECS=//p' "$API_ENV")
DRAIN_SECS=$(sed -n 's/^API__SERVER__DRAIN_SECS=//p' "$API_ENV")
[[ $MAX_STALE_SECS =~ ^[0-9]+$ && $DRAIN_SECS =~ ^[0-9]+$ ]] ||
  { echo "replicas-faults: $API_ENV must set API__KEYS__MAX_STALE_SECS and API__SERVER__DRAIN_SECS" >&2; exit 2; }

NAME=replicas-faults
# shellcheck source=scripts/lib/compose.sh
source scripts/lib/compose.sh
# figure CASE TEXT: one measured figure, in the form scripts/resilience.sh collects.
figure() { printf 'resilience: replicas, %s: %s\n' "$1" "$2"; }
command -v python3 >/dev/null || abort "python3 is needed for the probe"
((BENCH == 0)) || command -v wrk >/dev/null || abort "--bench needs wrk (Debian's package wrk)"

LB_PORT=$(free_port)
LB_STATS_PORT=$(free_port)
API1_PORT=$(free_port)
EMULATOR_PORT=$(free_port)
export LB_PORT LB_STATS_PORT API1_PORT EMULATOR_PORT
LB=http://127.0.0.1:$LB_PORT

compose() { "${COMPOSE[@]}" -p "$PROJECT" -f "$FILE" "$@"; }
WORK=$(mktemp -d)
probe_pid=

teardown() {
  local status=$?
  trap - EXIT INT TERM
  [[ -n $probe_pid ]] && kill "$probe_pid" 2>/dev/null
  if ((status != 0 || failures > 0)); then
    say "state at failure:"
    compose ps 2>&1 | sed 's/^/  /' || true
    for service in api-1 api-2 api-3 lb writer; do
      say "last log lines of $service:"
      compose logs --no-color --tail 15 "$service" 2>&1 | sed 's/^/  /' || true
    done
  fi
  say "tearing down (down -v --rmi local)"
  timeout 180 "${COMPOSE[@]}" -p "$PROJECT" -f "$FILE" down -v --rmi local --remove-orphans >/dev/null 2>&1 ||
    say "warning: \`down -v\` did not finish cleanly; see \`${COMPOSE[*]} -p $PROJECT -f $FILE ps\`"
  rm -rf "$WORK"
  finish "$status"
}
trap teardown EXIT
trap 'exit 130' INT TERM

cid() { compose ps -q "$1"; }
# HAProxy's status of a replica (UP, DOWN, MAINT, "UP 1/2", …), from its stats CSV.
lb_status() {
  curl -fsS --max-time 2 "http://127.0.0.1:$LB_STATS_PORT/stats;csv" 2>/dev/null |
    awk -F, -v s="$1" '$1 == "api" && $2 == s { print $18 }'
}
# until_true SECS COMMAND…: polls every half second; false once SECS have passed.
until_true() {
  local secs=$1 deadline
  shift
  deadline=$((SECONDS + secs))
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
}
is_up() { [[ $(lb_status "$1") == UP ]]; }
is_out() { [[ $(lb_status "$1") == DOWN* ]]; }
all_up() { is_up api-1 && is_up api-2 && is_up api-3; }
# The callers' job runs, retries and failures, summed over both: "runs failed retries". A run
# skipped because the job's previous one was still going (overlap = skip) is neither.
caller_counts() {
  local service
  for service in reader writer; do
    compose exec -T "$service" curl -fsS --max-time 3 http://127.0.0.1:9090/metrics 2>/dev/null || true
  done | awk '
    /^caller_job_runs_total/ && !/outcome="skipped"/ { runs += $NF; if ($0 !~ /outcome="success"/) failed += $NF }
    /^caller_job_retries_total/ { retries += $NF }
    END { printf "%d %d %d\n", runs, failed, retries }'
}
now() { python3 -c 'import time; print(f"{time.time():.3f}")'; }
# Seconds from time $1 to time $2 (both from `now`), one decimal.
secs_between() { python3 -c "print(f'{$2 - $1:.1f}')"; }
# The probe's calls between two times: "calls failed_first failed_final" (op filter optional).
probe_window() {
  python3 - "$WORK/probe.jsonl" "$1" "$2" "${3:-}" <<'EOF'
import json, sys
path, t0, t1, op = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
calls = first = final = 0
for line in open(path):
    r = json.loads(line)
    if not (t0 <= r["t"] < t1) or (op and r["op"] != op):
        continue
    calls += 1
    ok_first = r["first"] == (200 if r["op"] == "whoami" else 201)
    first += not ok_first
    final += not r["ok"]
print(calls, first, final)
EOF
}

say "using ${COMPOSE[*]}, project $PROJECT, HAProxy on 127.0.0.1:$LB_PORT (stats :$LB_STATS_PORT)"

# 0. Up, healthy, every replica in rotation, a token for the probe.
t0=$SECONDS
if ! timeout "$BUILD_TIMEOUT" "${COMPOSE[@]}" -p "$PROJECT" -f "$FILE" up -d --build >"$WORK/up.log" 2>&1; then
  tail -40 "$WORK/up.log" | sed 's/^/  /'
  abort "\`up -d --build\` failed or took more than ${BUILD_TIMEOUT} s"
fi
pass "built and started in $((SECONDS - t0)) s"
services=(emulator postgres api-1 api-2 api-3 reader writer)
t0=$SECONDS
healthy_all() {
  local s
  for s in "${services[@]}"; do [[ $(health "$s") == healthy ]] || return 1; done
}
until_true 240 healthy_all || abort "not all healthy after 240 s: $(for s in "${services[@]}"; do printf '%s=%s ' "$s" "$(health "$s")"; done)"
until_true 30 all_up || abort "HAProxy does not have the three replicas UP: $(lb_status api-1)/$(lb_status api-2)/$(lb_status api-3)"
pass "${#services[@]} containers healthy and HAProxy has api-1..3 UP, $((SECONDS - t0)) s after start"

compose exec -T emulator cat /var/lib/mesh-ca/ca.pem >"$WORK/ca.pem"
secret=$(sed -n 's/^AZURE_CLIENT_SECRET=//p' "$WRITER_SECRET_FILE")
curl -fsS --cacert "$WORK/ca.pem" --resolve "emulator:$EMULATOR_PORT:127.0.0.1" \
  "https://emulator:$EMULATOR_PORT/$TENANT/oauth2/v2.0/token" \
  --data-urlencode grant_type=client_credentials --data-urlencode "client_id=$WRITER_ID" \
  --data-urlencode "client_secret=$secret" --data-urlencode "scope=api://tasks-api/.default" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])' >"$WORK/token" ||
  abort "no token for the probe from the emulator"
unset secret
token=$(cat "$WORK/token")

python3 scripts/replicas_probe.py --url "$LB" --token-file "$WORK/token" >"$WORK/probe.jsonl" 2>"$WORK/probe.err" &
probe_pid=$!
until_true 20 test -s "$WORK/probe.jsonl" || abort "the probe wrote nothing: $(tail -1 "$WORK/probe.err")"
sleep 5
read -r runs0 failed0 retries0 < <(caller_counts)
((runs0 > 0)) || abort "the callers report no job runs"
scenario_start=$(now)

# Reports one scenario: the callers' runs, failures and retries since the last report, and the
# probe's calls in the window. Sets FAILED_RUNS, PROBE_FIRST, PROBE_FINAL for the checks.
report() {
  local name=$1 t1 runs failed retries calls first final
  t1=$(now)
  sleep 3 # runs repeated at the window's end have finished
  read -r runs failed retries < <(caller_counts)
  read -r calls first final < <(probe_window "$scenario_start" "$t1")
  FAILED_RUNS=$((failed - failed0))
  PROBE_FIRST=$first
  PROBE_FINAL=$final
  figure "$name" "job runs $((runs - runs0)), failed $FAILED_RUNS, repeated $((retries - retries0)); probe calls $calls, failed at first $first, failed after the repeat $final"
  runs0=$runs failed0=$failed retries0=$retries
  scenario_start=$t1
}

# 1. kill -9 one replica's process (a crash: Docker's restart policy applies, as it would not
#    to `docker kill`). Docker restarts it within a second or so, often before HAProxy has seen the
#    two failed checks it needs to take it out: whichever happens, nothing may fail.
say "1. kill -9 of api-2's process"
restarts=$(docker inspect -f '{{.RestartCount}}' "$(cid api-2)")
downs_before=$(compose logs --no-color lb 2>/dev/null | grep -cE "[0-9] Server api/api-2 is DOWN" || true)
# A burst of whoami calls from 16 threads, so that requests are in flight on api-2 when it dies.
python3 scripts/replicas_probe.py --url "$LB" --token-file "$WORK/token" --burst 8 --threads 16 >"$WORK/burst.json" &
burst_pid=$!
sleep 3
t_kill=$(now)
kill -9 "$(docker inspect -f '{{.State.Pid}}' "$(cid api-2)")"
restarted() { (($(docker inspect -f '{{.RestartCount}}' "$(cid api-2)") > restarts)); }
until_true 30 restarted || fail "Docker did not restart api-2 within 30 s"
t_restarted=$(now)
back() { [[ $(health api-2) == healthy ]] && is_up api-2; }
until_true 90 back || fail "api-2 not healthy and back in rotation within 90 s"
t_back=$(now)
wait "$burst_pid" || true
read -r burst_calls burst_bad < <(python3 -c 'import json, sys; b = json.load(open(sys.argv[1])); print(b["calls"], b["non_200"] + b["no_answer"])' "$WORK/burst.json" 2>/dev/null || echo "0 -1")
figure "kill -9" "a burst of whoami from 16 threads across the kill (8 s, no repeat of their own): $burst_calls calls, $burst_bad not answered 200"
check $((burst_calls > 0 && burst_bad == 0)) "kill -9 mid-burst: all $burst_calls whoami calls answered 200 (HAProxy resent the ones api-2 died holding)" \
  "kill -9 mid-burst: $burst_bad of $burst_calls whoami calls not answered 200"
downs=$(($(compose logs --no-color lb 2>/dev/null | grep -cE "[0-9] Server api/api-2 is DOWN" || true) - downs_before))
figure "kill -9" "api-2 restarted by Docker after $(secs_between "$t_kill" "$t_restarted") s, healthy and in rotation after $(secs_between "$t_kill" "$t_back") s; HAProxy marked it DOWN $downs time(s) meanwhile"
sleep 5
report "kill -9"
check $((FAILED_RUNS == 0 && PROBE_FINAL == 0)) "kill -9: 0 job runs and 0 probe calls failed beyond their one repeat; api-2 back in rotation" \
  "kill -9: $FAILED_RUNS job runs and $PROBE_FINAL probe calls failed after their repeat"

# 2. api-2 cut off from the identity provider, past its refresh and then its stale bound. Its keys
#    keep serving and their state stays `ready` up to the bound; `drain_secs` (5 s) before it,
#    /readyz answers 503 keys_expiring, so HAProxy has taken it out before it starts refusing.
say "2. api-2 cut off from the emulator (docker network disconnect ${PROJECT}_idp)"
# api-2's keys as its /readyz reports them: "state age_secs" ("? ?" when it does not answer).
keys_now() {
  compose exec -T api-2 curl -sS --max-time 3 'http://127.0.0.1:8080/readyz?exclude=database' 2>/dev/null |
    python3 -c "import json, sys; k = json.load(sys.stdin)['keys']; print(k['state'], k.get('age_secs', '?'))" 2>/dev/null ||
    echo "? ?"
}
docker network disconnect "${PROJECT}_idp" "$(cid api-2)"
read -r _ age_at_cut < <(keys_now)
# Each second: the keys' state and age, and whether HAProxy still sends to api-2.
last_ready_age=$age_at_cut out_age= early=0
deadline=$((SECONDS + MAX_STALE_SECS + 90))
while :; do
  read -r state age < <(keys_now)
  [[ $state == stale ]] && break
  if [[ $state == ready ]]; then
    last_ready_age=$age
    if [[ -z $out_age ]] && ! is_up api-2; then
      out_age=$age
      ((age >= MAX_STALE_SECS - DRAIN_SECS)) || early=1
    fi
  fi
  ((SECONDS < deadline)) || break
  sleep 1
done
stale_age=$age
refresh_failures=$(compose logs --no-color api-2 2>/dev/null | grep -c "fetching this tenant's signing keys failed" || true)
check $([[ $state == stale && -n $out_age ]] && ((early == 0)) && echo 1 || echo 0) \
  "cut off: keys ready (serving) up to age $last_ready_age s and stale at $stale_age s (bound $MAX_STALE_SECS s); HAProxy took api-2 out at key age $out_age s, before the bound" \
  "cut off: state '$state', out of rotation at key age '${out_age:-never while ready}' (expected between $((MAX_STALE_SECS - DRAIN_SECS)) and $MAX_STALE_SECS s)"
figure "cut off from the IdP" "keys $age_at_cut s old at the cut; $refresh_failures failed refreshes while cut off; ready and serving up to key age $last_ready_age s; out of rotation at age ${out_age:-?} s (keys_expiring: drain_secs $DRAIN_SECS s before the bound); stale at $stale_age s"
docker network connect --alias api-2 "${PROJECT}_idp" "$(cid api-2)"
t_heal=$(now)
until_true 60 is_up api-2 || fail "api-2 not back in rotation within 60 s of reconnecting"
t_back=$(now)
figure "cut off from the IdP" "back in rotation $(secs_between "$t_heal" "$t_back") s after reconnecting (refetch every 10 s while failing)"
report "cut off from the IdP"
check $((FAILED_RUNS == 0 && PROBE_FINAL == 0)) "cut off from the IdP: 0 job runs and 0 probe calls failed beyond their one repeat" \
  "cut off from the IdP: $FAILED_RUNS job runs and $PROBE_FINAL probe calls failed after their repeat"

# 3. The database cut off for 20 s.
say "3. PostgreSQL cut off (docker network disconnect ${PROJECT}_db) for 20 s"
docker network disconnect "${PROJECT}_db" "$(cid postgres)"
t_cut=$(now)
sleep 20
tasks_status=$(curl -sS -o "$WORK/tasks.json" -D "$WORK/tasks.head" -w '%{http_code}' --max-time 15 -H "Authorization: Bearer $token" "$LB/api/tasks" || true)
retry_after=$(sed -n 's/^[Rr]etry-[Aa]fter: *\([0-9]*\).*/\1/p' "$WORK/tasks.head")
whoami_status=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 15 -H "Authorization: Bearer $token" "$LB/api/whoami" || true)
docker network connect --alias postgres "${PROJECT}_db" "$(cid postgres)"
t_heal=$(now)
check $([[ $tasks_status == 503 && -n $retry_after && $whoami_status == 200 ]] && echo 1 || echo 0) \
  "database cut off: GET /api/tasks 503 with Retry-After $retry_after, whoami 200, through the balancer" \
  "database cut off: tasks $tasks_status (Retry-After '${retry_after}'), whoami $whoami_status"
read -r c_calls c_first c_final < <(probe_window "$t_cut" "$t_heal" create)
read -r w_calls w_first w_final < <(probe_window "$t_cut" "$t_heal" whoami)
tasks_ok() { [[ $(curl -sS -o /dev/null -w '%{http_code}' --max-time 5 -H "Authorization: Bearer $token" "$LB/api/tasks?limit=1") == 200 ]]; }
until_true 60 tasks_ok || fail "task routes not back 60 s after the database was reconnected"
t_back=$(now)
figure "database cut off" "20 s: probe creates $c_calls, refused $c_final (503 database_unavailable with Retry-After); whoami $w_calls, failed $w_final; task routes back $(secs_between "$t_heal" "$t_back") s after the heal"
check $((w_final == 0)) "database cut off: whoami kept answering 200 ($w_calls calls)" "database cut off: $w_final of $w_calls whoami calls failed"
report "database cut off"

# 4. Rolling restart: each replica stopped (SIGTERM: 5 s drain, then close), started, and back
#    in rotation before the next.
say "4. rolling restart of api-1, api-2, api-3"
for replica in api-1 api-2 api-3; do
  t0=$(now)
  compose restart -t 20 "$replica" >/dev/null 2>&1 || fail "restarting $replica failed"
  until_true 60 is_up "$replica" || fail "$replica not back in rotation within 60 s"
  figure "rolling restart" "$replica stopped, started and back in rotation in $(secs_between "$t0" "$(now)") s"
done
report "rolling restart"
check $((FAILED_RUNS == 0 && PROBE_FIRST == 0)) "rolling restart: 0 job runs failed and 0 probe calls failed, not even before a repeat" \
  "rolling restart: $FAILED_RUNS job runs failed, $PROBE_FIRST probe calls failed at first ($PROBE_FINAL after the repeat)"

kill "$probe_pid" 2>/dev/null
wait "$probe_pid" 2>/dev/null || true
probe_pid=

# Every create the probe saw acknowledged is in the database, once; and nothing is there twice.
compose exec -T postgres psql -U tasks -d tasks -Atc \
  "SELECT external_id FROM tasks WHERE external_id LIKE 'probe-%'" >"$WORK/stored.txt"
read -r acked stored missing duplicates < <(python3 - "$WORK/probe.jsonl" "$WORK/stored.txt" <<'EOF'
import collections, json, sys
acked = {r["external_id"] for r in map(json.loads, open(sys.argv[1])) if r["op"] == "create" and r["ok"]}
stored = collections.Counter(line.strip() for line in open(sys.argv[2]) if line.strip())
print(len(acked), sum(stored.values()), len(acked - set(stored)), sum(1 for n in stored.values() if n > 1))
EOF
)
figure "database cut off" "over the whole run, every fault included: $acked creates acknowledged to the probe, $stored stored, $missing acknowledged ones missing, $duplicates external_ids stored twice"
check $((missing == 0 && duplicates == 0 && acked > 0)) \
  "every acknowledged create is stored, once: $acked acknowledged, $stored stored ($((stored - acked)) landed without an acknowledgement), 0 missing, 0 twice" \
  "$missing acknowledged creates missing, $duplicates external_ids stored twice ($acked acknowledged, $stored stored)"

# 5. The balancer's log: requests per replica, and none while HAProxy had that replica out.
compose logs --no-color lb >"$WORK/lb.log" 2>&1
read -r requests to_out transitions per_replica < <(python3 - "$WORK/lb.log" <<'EOF'
# Each line starts with the time HAProxy wrote it (log format iso); a request is written when it
# ends, and carries the time it was accepted in brackets. A request counts against a replica only
# if it was accepted after HAProxy wrote that replica DOWN and before it wrote it UP again.
import re, sys
from datetime import datetime, timezone
def accepted(text):
    return datetime.strptime(text, "%d/%b/%Y:%H:%M:%S.%f").replace(tzinfo=timezone.utc).timestamp()
out_since, windows, requests, per = {}, [], [], {}
for line in open(sys.argv[1], errors="replace"):
    m = re.search(r"(\d{4}-\d\d-\d\dT[\d:.]+(?:Z|[+-]\d\d:?\d\d)) .*Server api/(api-\d) is (DOWN|UP)", line)
    if m:
        at = datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).timestamp()
        server, state = m.group(2), m.group(3)
        if state == "DOWN":
            out_since[server] = at
        elif server in out_since:
            windows.append((server, out_since.pop(server), at))
        continue
    m = re.search(r"\[(\d\d/\w{3}/\d{4}:[\d:.]+)\] tasks api/(api-\d) ", line)
    if m:
        requests.append((accepted(m.group(1)), m.group(2)))
        per[m.group(2)] = per.get(m.group(2), 0) + 1
windows += [(server, since, float("inf")) for server, since in out_since.items()]
to_out = sum(1 for t, server in requests for w in windows if w[0] == server and w[1] < t < w[2])
print(len(requests), to_out, 2 * len(windows), ",".join(f"{k}={v}" for k, v in sorted(per.items())))
EOF
)
figure "the balancer's view" "$requests requests ($per_replica), $transitions DOWN/UP changes, $to_out requests sent to a replica while it was out"
check $((to_out == 0 && transitions >= 2 && requests > 0)) \
  "the balancer sent no request to a replica it had out ($requests requests, $transitions DOWN/UP changes)" \
  "the balancer sent $to_out requests to a replica it had out ($transitions changes, $requests requests)"

# Benchmark: whoami through HAProxy to three replicas, then to one, then straight to api-1; wrk
# from the host, the callers stopped, one run.
if ((BENCH)); then
  compose stop reader writer >/dev/null 2>&1
  bench() {
    wrk -t2 -c32 -d"${BENCH_SECS:-15}"s --latency -H "Authorization: Bearer $token" "$1/api/whoami" >"$WORK/wrk.txt"
    awk '/Requests\/sec/ { rps = $2 } /99%/ { p99 = $2 } END { printf "%s %s\n", rps, p99 }' "$WORK/wrk.txt"
  }
  read -r three p99_three < <(bench "$LB")
  compose stop api-2 api-3 >/dev/null 2>&1
  until_true 30 is_out api-3 || fail "api-3 not out after stopping"
  read -r one p99_one < <(bench "$LB")
  read -r direct p99_direct < <(bench "http://127.0.0.1:$API1_PORT")
  figure "bench whoami (wrk -t2 -c32, ${BENCH_SECS:-15} s each)" "HAProxy→3 replicas $three req/s p99 $p99_three; HAProxy→1 replica $one req/s p99 $p99_one; api-1 direct $direct req/s p99 $p99_direct"
  figure "bench ratios" "3 vs 1 replicas $(python3 -c "print(f'{$three / $one:.2f}')")x; HAProxy→1 / direct $(python3 -c "print(f'{100 * $one / $direct:.1f}')")%"
fi
