#!/usr/bin/env bash
# Smoke test of the mesh in containers (docker-compose.yml + docker-compose.override.yml, settings
# from deploy/emulator/): builds and starts emulator, api, reader, writer, stranger, and the Python
# reports service behind entra-gateway; waits for every health check; checks that the reader's and
# the writer's jobs succeed and the stranger's are refused with 403 (the callers', the API's and
# the gateway's /metrics), and that the reports service saw the reader's identity and never the
# stranger, and that the inventory app (Python, no token code) gets through its token sidecar; then
# stops the emulator and checks that the callers and the app keep succeeding on cached tokens and
# the API and the gateway on their cached keys. Everything is
# removed afterwards (`down -v`), whether the test passed or not.
#
#   bash scripts/compose-smoke.sh
#
# Runs under a project name of its own (per run) on free host ports, so a mesh already running
# with `docker compose up`, or another run of this script, is not touched. Needs a Docker Engine with the base images (on a machine
# that cannot pull: bash scripts/docker-base-images.sh) and Compose v2 or docker-compose 1.29.
# Every wait is bounded; the first build of the images compiles the workspace in release mode
# (about 15 minutes on 2 cores), later ones reuse the layer cache.
set -euo pipefail
cd "$(dirname "$0")/.."

# A project of its own per run: two runs on one engine (a developer's and CI's) must not take
# over each other's containers.
PROJECT=${SMOKE_PROJECT:-m2m-entra-smoke-$$}
BUILD_TIMEOUT=${SMOKE_BUILD_TIMEOUT:-3000} # seconds for `up --build` (a cold build compiles everything)
HEALTH_TIMEOUT=${SMOKE_HEALTH_TIMEOUT:-180}
TRAFFIC_TIMEOUT=${SMOKE_TRAFFIC_TIMEOUT:-90}
OUTAGE_SECS=${SMOKE_OUTAGE_SECS:-25} # how long the callers must ride the emulator's absence
SERVICES=(emulator api reports gateway reader writer stranger sidecar nightly projector archiver)

NAME=compose-smoke
# shellcheck source=scripts/lib/compose.sh
source scripts/lib/compose.sh

API_PORT=${API_PORT:-$(free_port)}
EMULATOR_PORT=${EMULATOR_PORT:-$(free_port)}
GATEWAY_PORT=${GATEWAY_PORT:-$(free_port)}
export API_PORT EMULATOR_PORT GATEWAY_PORT
unset MESH_ENV # the emulator's DEMO settings, never a real tenant's

compose() { "${COMPOSE[@]}" -p "$PROJECT" "$@"; }
WORK=$(mktemp -d)

teardown() {
  local status=$?
  trap - EXIT INT TERM
  if ((status != 0 || failures > 0)); then
    say "state at failure:"
    compose ps 2>&1 | sed 's/^/  /' || true
    for service in "${SERVICES[@]}"; do
      say "last log lines of $service:"
      compose logs --no-color --tail 25 "$service" 2>&1 | sed 's/^/  /' || true
    done
  fi
  # The project's images go too (their layers stay in the build cache for the next run).
  say "tearing down (down -v --rmi local)"
  timeout 180 "${COMPOSE[@]}" -p "$PROJECT" down -v --rmi local --remove-orphans >/dev/null 2>&1 ||
    say "warning: \`down -v\` did not finish cleanly; see \`${COMPOSE[*]} -p $PROJECT ps\`"
  rm -rf "$WORK"
  finish "$status"
}
trap teardown EXIT
trap 'exit 130' INT TERM

say "using ${COMPOSE[*]} ($("${COMPOSE[@]}" version --short 2>/dev/null || echo '?')), project $PROJECT, API on 127.0.0.1:$API_PORT, emulator on 127.0.0.1:$EMULATOR_PORT"

# 1. Build and start. The log of the build goes to a file; its tail is shown if it fails.
t0=$SECONDS
say "docker compose up --build (timeout ${BUILD_TIMEOUT} s)"
if ! timeout "$BUILD_TIMEOUT" "${COMPOSE[@]}" -p "$PROJECT" up -d --build >"$WORK/up.log" 2>&1; then
  tail -40 "$WORK/up.log" | sed 's/^/  /'
  abort "\`up -d --build\` failed or took more than ${BUILD_TIMEOUT} s"
fi
pass "images built and containers started in $((SECONDS - t0)) s"

# 2. Every container healthy.
t0=$SECONDS
deadline=$((SECONDS + HEALTH_TIMEOUT))
while :; do
  unhealthy=()
  for service in "${SERVICES[@]}"; do
    status=$(health "$service")
    [[ $status == healthy ]] || unhealthy+=("$service=$status")
  done
  ((${#unhealthy[@]} == 0)) && break
  ((SECONDS < deadline)) || abort "not healthy after ${HEALTH_TIMEOUT} s: ${unhealthy[*]}"
  sleep 2
done
pass "all ${#SERVICES[@]} containers healthy (${SERVICES[*]}) $((SECONDS - t0)) s after start"

# From the host, through the published ports: the API's /readyz, and the emulator's discovery
# trusting only the CA it wrote to the shared volume.
if curl -fsS -o /dev/null "http://127.0.0.1:$API_PORT/readyz"; then
  pass "API published on 127.0.0.1:$API_PORT answers /readyz"
else
  fail "API's /readyz not reachable on 127.0.0.1:$API_PORT"
fi
compose exec -T emulator cat /var/lib/mesh-ca/ca.pem >"$WORK/ca.pem" 2>/dev/null || true
if [[ -s $WORK/ca.pem ]] && curl -fsS -o /dev/null --cacert "$WORK/ca.pem" \
  "https://localhost:$EMULATOR_PORT/72f1c3d4-5b6a-4c8d-9e0f-1a2b3c4d5e6f/v2.0/.well-known/openid-configuration"; then
  pass "emulator published on 127.0.0.1:$EMULATOR_PORT serves discovery, verified with the CA from the emulator-ca volume"
else
  fail "emulator's discovery not reachable with its CA on https://localhost:$EMULATOR_PORT"
fi

# Counters. A caller's come from inside its container (its port is not published).
caller_metrics() { compose exec -T "$1" curl -fsS http://127.0.0.1:9090/metrics 2>/dev/null || true; }
api_metrics() { curl -fsS "http://127.0.0.1:$API_PORT/metrics" 2>/dev/null || true; }
gateway_metrics() { curl -fsS "http://127.0.0.1:$GATEWAY_PORT/metrics" 2>/dev/null || true; }
# sum of the samples of metric $1 whose labels contain every one of $2… (e.g. 'job="whoami"')
metric() {
  local name=$1
  shift
  awk -v name="$name" -v want="$(printf '%s\n' "$@")" '
    BEGIN { n = split(want, w, "\n") }
    index($0, name "{") == 1 || $1 == name {
      ok = 1
      for (i = 1; i <= n; i++) if (w[i] != "" && index($0, w[i]) == 0) ok = 0
      if (ok) sum += $NF
    }
    END { printf "%d\n", sum }'
}
runs() { # service job outcome
  caller_metrics "$1" | metric caller_job_runs_total "job=\"$2\"" "outcome=\"$3\""
}
snapshot() {
  caller_metrics reader >"$WORK/reader.prom"
  caller_metrics writer >"$WORK/writer.prom"
  caller_metrics stranger >"$WORK/stranger.prom"
  caller_metrics nightly >"$WORK/nightly.prom"
  caller_metrics archiver >"$WORK/archiver.prom"
  WI_OK=$(metric caller_job_runs_total 'job="archive-scan"' 'outcome="success"' <"$WORK/archiver.prom")
  WI_BAD=$(($(metric caller_job_runs_total 'outcome="failure"' <"$WORK/archiver.prom") + $(metric caller_job_runs_total 'outcome="error"' <"$WORK/archiver.prom")))
  N_WHO=$(metric caller_job_runs_total 'job="whoami"' 'outcome="success"' <"$WORK/nightly.prom")
  N_BAD=$(($(metric caller_job_runs_total 'outcome="failure"' <"$WORK/nightly.prom") + $(metric caller_job_runs_total 'outcome="error"' <"$WORK/nightly.prom")))
  compose logs --no-color inventory >"$WORK/inventory.log" 2>&1 || true
  I_TASKS=$(grep -c "GET /api/tasks?limit=5 via the sidecar → 200" "$WORK/inventory.log" || true)
  I_REPORTS=$(grep -c "GET /reports/daily via the sidecar → 200" "$WORK/inventory.log" || true)
  I_MI=$(grep -c "GET /api/whoami with it → 200 (as app 0b9a1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d)" "$WORK/inventory.log" || true)
  # After the app's log: every call it logged has been counted by then (the check compares them).
  caller_metrics sidecar >"$WORK/sidecar.prom"
  SC_OK=$(metric caller_sidecar_requests_total 'status="200"' <"$WORK/sidecar.prom")
  api_metrics >"$WORK/api.prom"
  gateway_metrics >"$WORK/gateway.prom"
  R_LIST=$(metric caller_job_runs_total 'job="list-tasks"' 'outcome="success"' <"$WORK/reader.prom")
  R_WHO=$(metric caller_job_runs_total 'job="whoami"' 'outcome="success"' <"$WORK/reader.prom")
  R_REPORT=$(metric caller_job_runs_total 'job="daily-report"' 'outcome="success"' <"$WORK/reader.prom")
  R_BAD=$(($(metric caller_job_runs_total 'outcome="failure"' <"$WORK/reader.prom") + $(metric caller_job_runs_total 'outcome="error"' <"$WORK/reader.prom")))
  W_OK=$(metric caller_job_runs_total 'job="create-task"' 'outcome="success"' <"$WORK/writer.prom")
  W_BAD=$(($(metric caller_job_runs_total 'outcome="failure"' <"$WORK/writer.prom") + $(metric caller_job_runs_total 'outcome="error"' <"$WORK/writer.prom")))
  S_OK=$(metric caller_job_runs_total 'outcome="success"' <"$WORK/stranger.prom")
  S_REFUSED=$(metric caller_job_runs_total 'job="list-tasks"' 'outcome="failure"' <"$WORK/stranger.prom")
  S_ERR=$(metric caller_job_runs_total 'outcome="error"' <"$WORK/stranger.prom")
  S_REPORT_REFUSED=$(metric caller_job_runs_total 'job="peek-report"' 'outcome="failure"' <"$WORK/stranger.prom")
  G_ACCEPTED=$(metric gateway_decisions_total 'outcome="accepted"' <"$WORK/gateway.prom")
  G_NOT_ALLOWED=$(metric gateway_decisions_total 'outcome="client_not_allowed"' <"$WORK/gateway.prom")
  A_ACCEPTED=$(metric api_auth_outcomes_total 'outcome="accepted"' <"$WORK/api.prom")
  A_NOT_ALLOWED=$(metric api_auth_outcomes_total 'outcome="client_not_allowed"' <"$WORK/api.prom")
  A_403=$(metric api_http_requests_total 'status="403"' <"$WORK/api.prom")
  A_201=$(metric api_http_requests_total 'method="POST"' 'status="201"' <"$WORK/api.prom")
}
show() {
  say "$1: reader list-tasks ok=$R_LIST whoami ok=$R_WHO bad=$R_BAD | writer create-task ok=$W_OK bad=$W_BAD |" \
    "stranger refused=$S_REFUSED ok=$S_OK error=$S_ERR | API accepted=$A_ACCEPTED client_not_allowed=$A_NOT_ALLOWED 403s=$A_403 201s=$A_201 |" \
    "reports: reader ok=$R_REPORT stranger refused=$S_REPORT_REFUSED gateway accepted=$G_ACCEPTED client_not_allowed=$G_NOT_ALLOWED |" \
    "inventory via the sidecar: tasks 200=$I_TASKS reports 200=$I_REPORTS managed-identity token accepted=$I_MI (sidecar 200s $SC_OK) |" \
    "nightly (managed identity) whoami ok=$N_WHO bad=$N_BAD | archiver (workload identity) ok=$WI_OK bad=$WI_BAD"
}

# 3. Traffic: each job has run at least twice (they run every 5 s).
t0=$SECONDS
deadline=$((SECONDS + TRAFFIC_TIMEOUT))
while :; do
  snapshot
  ((R_LIST >= 2 && R_WHO >= 2 && W_OK >= 2 && S_REFUSED >= 2 && A_NOT_ALLOWED >= 2 &&
    R_REPORT >= 2 && S_REPORT_REFUSED >= 2 && G_NOT_ALLOWED >= 2 &&
    I_TASKS >= 2 && I_REPORTS >= 2 && I_MI >= 2 && N_WHO >= 2 && WI_OK >= 2)) && break
  ((SECONDS < deadline)) || break
  sleep 2
done
show "after $((SECONDS - t0)) s of traffic"
check "$((R_LIST >= 2 && R_WHO >= 2 && R_BAD == 0))" \
  "reader's calls succeed (list-tasks $R_LIST, whoami $R_WHO, none failed)" \
  "reader: list-tasks ok=$R_LIST whoami ok=$R_WHO failed=$R_BAD (want >= 2, >= 2, 0)"
check "$((W_OK >= 2 && W_BAD == 0 && A_201 >= W_OK))" \
  "writer's calls succeed (create-task $W_OK, the API answered 201 $A_201 times, none failed)" \
  "writer: create-task ok=$W_OK failed=$W_BAD API 201s=$A_201 (want >= 2, 0, >= ok)"
check "$((S_REFUSED >= 2 && S_OK == 0 && S_ERR == 0 && A_NOT_ALLOWED >= 2 && A_403 >= A_NOT_ALLOWED))" \
  "stranger's calls are refused with 403 client_not_allowed ($S_REFUSED runs refused, API 403s $A_403)" \
  "stranger: refused=$S_REFUSED ok=$S_OK error=$S_ERR API client_not_allowed=$A_NOT_ALLOWED 403s=$A_403"
# The reports service (Python, no token code) saw the reader's identity as the gateway set it, and
# no request of the stranger's: the gateway refused those before they reached it.
compose logs --no-color reports >"$WORK/reports.log" 2>&1 || true
READER_ID=0b9a1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d STRANGER_ID=3e4f5a6b-7c8d-4e9f-8a0b-2c3d4e5f6a7b
P_READER=$(grep -c "GET /reports/daily → 200 for app $READER_ID (roles: Reports.Read)" "$WORK/reports.log" || true)
P_STRANGER=$(grep -c "$STRANGER_ID" "$WORK/reports.log" || true)
check "$((R_REPORT >= 2 && S_REPORT_REFUSED >= 2 && G_NOT_ALLOWED >= 2 && G_ACCEPTED >= R_REPORT && P_READER >= R_REPORT && P_STRANGER == 0))" \
  "reports through the gateway: reader's daily-report ok $R_REPORT times, the Python service saw its client ID and role $P_READER times; stranger refused at the gateway (client_not_allowed $G_NOT_ALLOWED), never reaching Python" \
  "reports: reader ok=$R_REPORT stranger refused=$S_REPORT_REFUSED gateway accepted=$G_ACCEPTED client_not_allowed=$G_NOT_ALLOWED Python saw reader=$P_READER stranger=$P_STRANGER"

# The inventory app (Python, no token code) through its sidecar on the loopback they share.
check "$((I_TASKS >= 2 && I_REPORTS >= 2 && I_MI >= 2 && SC_OK >= I_TASKS + I_REPORTS))" \
  "inventory app with no token code: through its sidecar the API answered 200 $I_TASKS times and the gateway $I_REPORTS times; a token from its IDENTITY_ENDPOINT was accepted by the API as the reader's $I_MI times" \
  "inventory: tasks 200=$I_TASKS reports 200=$I_REPORTS managed-identity accepted=$I_MI sidecar 200s=$SC_OK (want >= 2 each)"

# The secretless caller: a managed identity's tokens from the emulator's /msi/token, no secret.
check "$((N_WHO >= 2 && N_BAD == 0))" \
  "secretless caller (managed identity nightly-mi, tokens from the emulator's managed-identity endpoint): whoami ok $N_WHO times, none failed" \
  "nightly: whoami ok=$N_WHO failed=$N_BAD (want >= 2, 0)"

# The workload-identity caller: a projected service-account token from the projector (the
# emulator's stand-in cluster issuer) exchanged through archiver-job's federated credential.
compose logs --no-color projector >"$WORK/projector.log" 2>&1 || true
PJ_WRITTEN=$(grep -c "projected service-account token written" "$WORK/projector.log" || true)
check "$((WI_OK >= 2 && WI_BAD == 0 && PJ_WRITTEN >= 1))" \
  "secretless caller on workload identity (archiver-job, federated credential for system:serviceaccount:jobs:archiver): archive-scan ok $WI_OK times, none failed; the projector wrote its token" \
  "archiver: ok=$WI_OK failed=$WI_BAD projector writes=$PJ_WRITTEN (want >= 2, 0, >= 1)"

# 4. The identity provider goes away: tokens and keys already held keep the mesh working.
compose stop emulator >/dev/null 2>&1 || abort "could not stop the emulator"
emulator_state=$(health emulator)
emulator_exited=0
[[ $emulator_state == exited ]] && emulator_exited=1
check "$emulator_exited" "emulator stopped" "emulator still $emulator_state after stop"
snapshot
show "emulator stopped"
before_list=$R_LIST before_who=$R_WHO before_w=$W_OK before_s=$S_REFUSED before_acc=$A_ACCEPTED
before_report=$R_REPORT before_gacc=$G_ACCEPTED before_inventory=$I_TASKS before_nightly=$N_WHO
before_archiver=$WI_OK
before_rbad=$R_BAD before_wbad=$W_BAD
sleep "$OUTAGE_SECS"
snapshot
show "${OUTAGE_SECS} s without the emulator"
want=$((OUTAGE_SECS / 5 - 2)) # runs every 5 s, less slack for timing
((want >= 1)) || want=1
check "$((R_LIST - before_list >= want && R_WHO - before_who >= want && R_BAD == before_rbad))" \
  "reader keeps succeeding on its cached token (+$((R_LIST - before_list)) list-tasks, +$((R_WHO - before_who)) whoami)" \
  "reader during the outage: +$((R_LIST - before_list)) list-tasks, +$((R_WHO - before_who)) whoami, +$((R_BAD - before_rbad)) failed (want >= $want, >= $want, 0)"
check "$((W_OK - before_w >= want && W_BAD == before_wbad))" \
  "writer keeps succeeding on its cached token (+$((W_OK - before_w)) create-task)" \
  "writer during the outage: +$((W_OK - before_w)) create-task, +$((W_BAD - before_wbad)) failed (want >= $want, 0)"
check "$((S_REFUSED - before_s >= want && S_OK == 0))" \
  "stranger is still refused with 403, not failing on tokens (+$((S_REFUSED - before_s)) refused)" \
  "stranger during the outage: +$((S_REFUSED - before_s)) refused, ok=$S_OK (want >= $want, 0)"
api_ready=0
curl -fsS -o /dev/null "http://127.0.0.1:$API_PORT/readyz" && api_ready=1
check "$((A_ACCEPTED > before_acc && api_ready))" \
  "API still accepts tokens (+$((A_ACCEPTED - before_acc))) and is ready on its cached keys" \
  "API during the outage: +$((A_ACCEPTED - before_acc)) accepted, /readyz ready=$api_ready"
check "$((R_REPORT - before_report >= want && G_ACCEPTED > before_gacc))" \
  "the gateway still lets the reader's reports through on its cached keys (+$((R_REPORT - before_report)))" \
  "reports during the outage: +$((R_REPORT - before_report)) reader ok, gateway +$((G_ACCEPTED - before_gacc)) accepted (want >= $want)"
check "$((I_TASKS - before_inventory >= want))" \
  "the inventory app keeps getting 200 through its sidecar's cached token (+$((I_TASKS - before_inventory)))" \
  "inventory during the outage: +$((I_TASKS - before_inventory)) tasks 200 (want >= $want)"
check "$((N_WHO - before_nightly >= want && N_BAD == 0))" \
  "the secretless caller keeps succeeding on its cached managed-identity token (+$((N_WHO - before_nightly)) whoami)" \
  "nightly during the outage: +$((N_WHO - before_nightly)) whoami, failed=$N_BAD (want >= $want, 0)"
check "$((WI_OK - before_archiver >= want && WI_BAD == 0))" \
  "the workload-identity caller keeps succeeding on its cached token (+$((WI_OK - before_archiver)) archive-scan)" \
  "archiver during the outage: +$((WI_OK - before_archiver)) archive-scan, failed=$WI_BAD (want >= $want, 0)"
for service in api reports gateway reader writer stranger sidecar nightly projector archiver; do
  status=$(health "$service")
  [[ $status == healthy ]] || fail "$service is $status during the emulator's absence"
done
