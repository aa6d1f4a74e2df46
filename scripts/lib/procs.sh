# Sourced by the load scripts, after `cd` to the repository and with SCRIPT naming the script for
# its messages: a work directory and the background processes started there, removed and stopped
# on exit however the script ends; a one-line failure; waiting for a ready file; reading one
# field of a JSON file; free loopback ports.

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  # A script with something the pid list cannot stop (a daemonised server) defines this.
  if declare -F before_removing_work >/dev/null; then before_removing_work || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() { echo "$SCRIPT: $*" >&2; exit 1; }

# The last line a process logged, for a one-line reason.
last_log() { tail -n 1 "$1" 2>/dev/null | cut -c1-300; }

# wait_for FILE PID NAME LOG: at most 30 s for a ready file; fails as soon as its process exited.
wait_for() {
  local file=$1 pid=$2 name=$3 log=$4
  for _ in $(seq 1 300); do
    [[ -s "$file" ]] && return 0
    kill -0 "$pid" 2>/dev/null || fail "$name exited before it was ready: $(last_log "$log")"
    sleep 0.1
  done
  fail "$name was not ready within 30 s: $(last_log "$log")"
}

json() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }

# free_ports N: N distinct free loopback ports (all bound at once, then released).
free_ports() {
  python3 - "$1" <<'PY'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
PY
}

# demo_identity AUTHORITY: the demo caller's [identity] section (caller-service/demo/caller.toml:
# the reader, DEMO secret) with its authority host replaced, for a caller.toml written by a script.
demo_identity() {
  python3 - "$1" <<'PY'
import re, sys
text = open("caller-service/demo/caller.toml").read()
identity = re.search(r"\[identity\]\n(?:[^\[\n].*\n)+", text).group(0)
print(re.sub(r'authority_host = ".*"', f'authority_host = "{sys.argv[1]}"', identity))
PY
}

# cpu_ticks PID...: the processes' user + system CPU time so far, summed, in clock ticks
# (/proc/PID/stat).
cpu_ticks() {
  local pid
  for pid in "$@"; do cat "/proc/$pid/stat"; done | awk '{ sum += $14 + $15 } END { print sum + 0 }'
}

# cpu_run "PID..." wrk-arguments...: one wrk run (`run`, which the script defines) and the CPU
# time of the processes PID... over it. Prints run's line plus the CPU microseconds they spent per
# request ("-" without any). On a machine whose cores wrk and the servers share, a server's CPU
# time per request is its cost whatever the scheduler does to its throughput from run to run.
cpu_run() {
  local pids=$1 before after line
  shift
  # shellcheck disable=SC2086 # a list of pids
  before=$(cpu_ticks $pids)
  line=$(run "$@")
  # shellcheck disable=SC2086
  after=$(cpu_ticks $pids)
  awk -v line="$line" -v a="$before" -v b="$after" -v hz="$(getconf CLK_TCK)" 'BEGIN {
    split(line, f, " ")
    if (f[5] > 0) printf "%s %.2f\n", line, (b - a) / hz * 1e6 / f[5]; else printf "%s -\n", line
  }'
}
