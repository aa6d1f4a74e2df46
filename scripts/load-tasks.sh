#!/usr/bin/env bash
# The tasks routes under load on SQLite and on PostgreSQL, in the same run, with wrk over loopback
# (only 127.0.0.1 is touched; every run bounded in time).
#
#   scripts/load-tasks.sh              # DURATION=10s CONNECTIONS=16 THREADS=1
#
# Starts the emulator, a local PostgreSQL (Debian's server on a temporary directory and a free
# port, as nobody when run as root, removed afterwards) and two api-service processes, one per
# backend, with the demo settings and default workers. Then, alternating between the backends:
# `POST /api/tasks` (a writer's app token, a small JSON body; each request creates a task), then
# `GET /api/tasks` (the first page of 50, with a reader's token). Prints a Markdown table
# (requests/s, p50/p99 latency, errors), the PostgreSQL/SQLite ratio of each route, the tasks
# each database holds afterwards against the 201s wrk saw, and the machine's cores and load.
#
# DURATION is wrk's (`10s`, `1m`) or plain seconds. Needs wrk, curl, python3 and PostgreSQL
# (Debian: apt-get install wrk postgresql). Builds the release binaries first.
set -euo pipefail

DURATION=${DURATION:-10s}
[[ $DURATION =~ ^[0-9]+$ ]] && DURATION="${DURATION}s"
CONNECTIONS=${CONNECTIONS:-16}
THREADS=${THREADS:-1}

for tool in wrk curl python3; do
  command -v "$tool" >/dev/null || { echo "load-tasks: needs $tool (Debian: apt-get install $tool)" >&2; exit 2; }
done
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[[ -n $pgbin && -x $pgbin/initdb ]] || { echo "load-tasks: needs PostgreSQL (Debian: apt-get install postgresql)" >&2; exit 2; }

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
echo "load-tasks: building release binaries" >&2
cargo build --release --locked -q -p entra-emulator -p api-service

SCRIPT=load-tasks
. scripts/lib/procs.sh
chmod 755 "$work"
as_pg=()
[[ $(id -u) == 0 ]] && as_pg=(runuser -u nobody --)
# pg_ctl daemonises the server: the pid list cannot stop it.
before_removing_work() {
  [[ -d $work/pg/data ]] && "${as_pg[@]}" "$pgbin/pg_ctl" -D "$work/pg/data" stop -m immediate >/dev/null 2>&1
}

# PostgreSQL: the server's defaults (fsync, synchronous_commit on), so a commit is as durable as
# SQLite's synchronous=FULL one.
mkdir -p "$work/pg"
[[ ${#as_pg[@]} -gt 0 ]] && chown -R nobody: "$work/pg"
pgport=$(free_ports 1)
(cd "$work/pg" && "${as_pg[@]}" "$pgbin/initdb" -D "$work/pg/data" -A trust -U postgres -E UTF8 --locale=C >/dev/null)
(cd "$work/pg" && "${as_pg[@]}" "$pgbin/pg_ctl" -D "$work/pg/data" -l "$work/pg/server.log" -w \
  -o "-c listen_addresses=127.0.0.1 -p $pgport -k $work/pg" start >/dev/null)
(cd "$work/pg" && "${as_pg[@]}" "$pgbin/createdb" -h 127.0.0.1 -p "$pgport" -U postgres tasks)

EMULATOR__DATA_DIR="$work/emulator" EMULATOR__SERVER__HTTPS_PORT=0 EMULATOR__LOG__FILTER=warn \
  target/release/entra-emulator serve --ready-file "$work/emulator.json" 2>"$work/emulator.log" &
pids+=($!)
wait_for "$work/emulator.json" "$!" "entra-emulator" "$work/emulator.log"
idp=$(json "$work/emulator.json" public_url)
ca=$(json "$work/emulator.json" ca_cert)

token() {
  curl -sS --cacert "$ca" "$idp/72f1c3d4-5b6a-4c8d-9e0f-1a2b3c4d5e6f/oauth2/v2.0/token" \
    -d grant_type=client_credentials -d client_id="$1" --data-urlencode "client_secret=$2" \
    --data-urlencode 'scope=api://tasks-api/.default' \
    | python3 -c "import json,sys; print(json.load(sys.stdin)['access_token'])"
}
reader=$(token 0b9a1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d 'rdr8Q~demo.reader.secret.not-for-production')
writer=$(token 1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f 'wrt8Q~demo.writer.secret.not-for-production')

# start NAME VAR VALUE: an API on port 0 with its database named by one variable.
start() {
  env API__SERVER__PORT=0 API__ENTRA__AUTHORITY_HOST="$idp" API__HTTP__EXTRA_CA_FILE="$ca" \
    API__LOG__FILTER=warn "$2=$3" \
    target/release/api-service --config api-service/demo/api.toml serve --ready-file "$work/$1.json" \
    2>"$work/$1.log" &
  pids+=($!)
  wait_for "$work/$1.json" "$!" "api-service on $1" "$work/$1.log"
}
start sqlite API__DATABASE__PATH "$work/tasks.db"
start postgres API__DATABASE__URL "postgres://postgres@127.0.0.1:$pgport/tasks"
declare -A url=([sqlite]=$(json "$work/sqlite.json" url) [postgres]=$(json "$work/postgres.json" url))

cat >"$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"title":"load: a task created under wrk","description":"sixty-odd bytes of description, as a job would send"}'
wrk.headers["Content-Type"] = "application/json"
LUA

run() {
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$@" 2>&1 | python3 scripts/wrk-summary.py
}

cpus=$(nproc)
model=$(sed -n "s/^model name[[:space:]]*: //p" /proc/cpuinfo | head -1)
load_before=$(cut -d" " -f1-3 /proc/loadavg)
echo "load-tasks: $DURATION per run, $CONNECTIONS connections, $THREADS wrk thread(s); load average $load_before" >&2
declare -A rps p50 p99 err req
for route in post get; do
  for db in sqlite postgres; do
    if [[ $route == post ]]; then
      read -r rps[$route.$db] p50[$route.$db] p99[$route.$db] err[$route.$db] req[$route.$db] \
        <<<"$(run -s "$work/post.lua" -H "Authorization: Bearer $writer" "${url[$db]}/api/tasks")"
    else
      read -r rps[$route.$db] p50[$route.$db] p99[$route.$db] err[$route.$db] req[$route.$db] \
        <<<"$(run -H "Authorization: Bearer $reader" "${url[$db]}/api/tasks")"
    fi
  done
done
load_after=$(cut -d" " -f1-3 /proc/loadavg)

# Tasks each database holds: pages of 200 through the API, counted.
count() {
  python3 - "$1" "$reader" <<'PY'
import json, sys, urllib.request
base, token = sys.argv[1], sys.argv[2]
total, after = 0, None
while True:
    url = f"{base}/api/tasks?limit=200" + (f"&after={after}" if after else "")
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    page = json.load(urllib.request.urlopen(request))
    total += len(page["items"])
    after = page.get("next")
    if not after:
        break
print(total)
PY
}

echo
echo "| route | backend | requests/s | p50 ms | p99 ms | errors |"
echo "|---|---|---:|---:|---:|---:|"
for route in post get; do
  for db in sqlite postgres; do
    label="POST /api/tasks (create)"
    [[ $route == get ]] && label="GET /api/tasks (first page of 50)"
    echo "| $label | $db | ${rps[$route.$db]} | ${p50[$route.$db]} | ${p99[$route.$db]} | ${err[$route.$db]} |"
  done
done
python3 - "${rps[post.sqlite]}" "${rps[post.postgres]}" "${rps[get.sqlite]}" "${rps[get.postgres]}" <<'PY'
import sys
ps, pp, gs, gp = map(float, sys.argv[1:])
print(f"\nPostgreSQL / SQLite: POST {pp / ps:.2f}x, GET {gp / gs:.2f}x")
PY
for db in sqlite postgres; do
  created=$((req[post.$db] - err[post.$db]))
  echo "$db: $(count "${url[$db]}") tasks stored, $created creates answered 201 (wrk's count; in-flight ones at the end may add a few)"
done
echo "machine: $cpus cores ($model), shared with wrk, the emulator, both APIs and PostgreSQL; load average before: $load_before, after: $load_after; $(date -u '+%Y-%m-%d %H:%M UTC'); PostgreSQL $("$pgbin/postgres" --version | awk '{print $3}')"
total_err=0
for k in "${!err[@]}"; do [[ ${err[$k]} == 0 ]] || total_err=1; done
[[ $total_err == 0 ]] || { echo "load-tasks: errors under load" >&2; exit 1; }
