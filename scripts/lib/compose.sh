# Sourced by the scripts that run the mesh in containers (compose-smoke.sh, replicas-faults.sh),
# after `cd` to the repository and with NAME naming the script for its messages: PASS/FAIL lines
# counted in `checks` and `failures`, and the verdict (`finish`); the Compose command (`docker compose`, else Debian's
# `docker-compose` 1.29) in COMPOSE, the engine checked; a free loopback port; a service's health.
# The script defines `compose` (its project and files) before calling `health`.

started=$SECONDS
failures=0
checks=0
say() { printf '%s: %s\n' "$NAME" "$*"; }
pass() {
  checks=$((checks + 1))
  printf 'PASS: %s\n' "$*"
}
fail() {
  checks=$((checks + 1))
  failures=$((failures + 1))
  printf 'FAIL: %s\n' "$*"
}
# check <0|1> <what passed> <what failed>
check() { if (($1)); then pass "$2"; else fail "$3"; fi; }
# A failure after which nothing else can be checked.
abort() {
  fail "$*"
  exit 1
}

if docker compose version >/dev/null 2>&1; then
  COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  COMPOSE=(docker-compose)
else
  abort "neither \`docker compose\` nor \`docker-compose\` is installed"
fi
docker info >/dev/null 2>&1 || abort "no Docker Engine reachable (docker info failed)"

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# The health of a service's container: its health check's status when it has one and runs, else
# its state (exited, …), or `missing`.
health() {
  local id
  id=$(compose ps -a -q "$1" 2>/dev/null)
  [[ -n $id ]] || {
    echo missing
    return
  }
  docker inspect -f '{{if and .State.Running .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$id" 2>/dev/null || echo missing
}

# The end of a run, from its EXIT trap: the verdict line, and the exit status (the script's own
# when it failed, 1 when a check failed).
finish() {
  local status=$1 verdict=PASS
  ((status == 0 && failures == 0)) || verdict=FAIL
  say "$verdict: $((checks - failures)) of $checks checks passed in $((SECONDS - started)) s"
  ((status != 0)) && exit "$status"
  ((failures == 0)) || exit 1
}
