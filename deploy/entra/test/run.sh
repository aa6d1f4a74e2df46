#!/usr/bin/env bash
# Offline test of deploy/entra/setup.sh and cleanup.sh: no Azure, no network.
#
#   bash deploy/entra/test/run.sh
#
# `az` is fake_az.py (a model of the az commands and Microsoft Graph rules the scripts rely on, with
# replication lag and stale reads switched on), so this proves the scripts' logic, idempotence and
# output against that model, not against Entra. Then what setup.sh wrote is used as written by the
# real binaries: `api-service check` parses api.env, and the whole mesh runs with the tenant that
# setup.sh registered exported to the entra-emulator: the API with api.env, each caller with its
# .env and .toml (only the authority host, the CA and the API's address are swapped for local ones,
# as the compose file for the emulator does). Needs python3 with jmespath, jq, openssl, curl, and
# the workspace binaries (built with cargo --locked if missing).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
TEST="$ROOT/deploy/entra/test"
SETUP="$ROOT/deploy/entra/setup.sh"
CLEANUP="$ROOT/deploy/entra/cleanup.sh"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug"

python3 -c 'import jmespath' 2>/dev/null || { echo "run.sh: python3 with the jmespath module is needed" >&2; exit 2; }
for tool in jq openssl curl; do
  command -v "$tool" >/dev/null || { echo "run.sh: $tool is needed" >&2; exit 2; }
done
for bin in entra-emulator api-service caller-service; do
  if [[ ! -x "$BIN/$bin" ]]; then
    (cd "$ROOT" && cargo build --locked -q -p entra-emulator -p api-service -p caller-service)
    break
  fi
done

# Nothing from the caller's own environment may leak into what is being tested.
while read -r var; do unset "$var"; done < <(compgen -e | grep -E '^(AZURE_|API__|CALLER__|EMULATOR__|MESH_|RUST_LOG$)' || true)

T="$(mktemp -d)"
PIDS=()
finish() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$T"
}
trap finish EXIT

mkdir "$T/bin"
printf '#!/bin/sh\nexec python3 "%s" "$@"\n' "$TEST/fake_az.py" >"$T/bin/az"
chmod +x "$T/bin/az"
export PATH="$T/bin:$PATH" FAKE_AZ_STATE="$T/state.json" FAKE_AZ_LOG="$T/calls.log"
export MESH_OUT_DIR="$T/out" MESH_RETRY_DELAY_SECS=0 MESH_RETRY_ATTEMPTS=5
OUT="$T/out"

passed=0
failed=0
ok() { passed=$((passed + 1)); printf '  ok    %s\n' "$1"; }
bad() { failed=$((failed + 1)); printf '  FAIL  %s\n' "$1"; }
check() { # DESCRIPTION COMMAND...
  local what="$1"
  shift
  if "$@" >/dev/null 2>&1; then ok "$what"; else bad "$what"; fi
}
equal() { # DESCRIPTION ACTUAL EXPECTED
  if [[ "$2" == "$3" ]]; then ok "$1"; else bad "$1: got '$2', expected '$3'"; fi
}
state() { jq -r "$1" "$FAKE_AZ_STATE"; }
# A variable from an env file as docker compose reads it: comments and blank lines skipped,
# single-quoted values literal.
env_get() { env_list "$1" | sed -n "s/^$2=//p"; }
env_list() {
  python3 - "$1" <<'EOF'
import sys
for line in open(sys.argv[1]):
    line = line.strip()
    if not line or line.startswith("#"):
        continue
    key, _, value = line.partition("=")
    if len(value) >= 2 and value[0] == value[-1] == "'":
        value = value[1:-1]
    elif " #" in value:
        value = value.split(" #", 1)[0]
    print(f"{key}={value}")
EOF
}
mode() { stat -c %a "$1" 2>/dev/null || stat -f %Lp "$1"; }
calls_since() { tail -n +"$(($1 + 1))" "$FAKE_AZ_LOG"; }
calls_count() { if [[ -f "$FAKE_AZ_LOG" ]]; then wc -l <"$FAKE_AZ_LOG"; else echo 0; fi; }

echo "setup.sh, signed out"
if FAKE_AZ_LOGGED_OUT=1 "$SETUP" >"$T/log" 2>&1; then
  bad "refuses to run"
else
  ok "refuses to run"
fi
check "says to run az login" grep -q "az is not logged in.*az login --tenant" "$T/log"
check "creates nothing" test ! -e "$OUT"

echo "setup.sh, first run (replication lag on)"
FAKE_AZ_LAG=1 "$SETUP" >"$T/run1.out" 2>"$T/run1.log" || { cat "$T/run1.log"; bad "first run succeeds"; exit 1; }
ok "first run succeeds"
check "prints the tenant" grep -q "^Tenant: *9d3f0b6e-2a4c-4e8b-b1f7-5c6d7e8f9a01" "$T/run1.log"
check "retried through replication lag" grep -q "not visible everywhere yet" "$T/run1.log"
equal "nothing on stdout" "$(wc -c <"$T/run1.out")" 0
equal "out/ is mode 700" "$(mode "$OUT")" 700
for f in api.env reader.env writer.env stranger.env cert-job.env reader.toml writer.toml stranger.toml \
  cert-job.toml cert-job.pem cert-job.crt registrations.env; do
  if [[ -f "$OUT/$f" && "$(mode "$OUT/$f")" == 600 ]]; then ok "$f written, mode 600"; else bad "$f written, mode 600"; fi
done

API_APP_ID="$(state '.apps[] | select(.displayName == "m2m-entra-tasks-api") | .appId')"
app_id() { state ".apps[] | select(.displayName == \"m2m-entra-$1\") | .appId"; }
READER="$(app_id reader-job)" WRITER="$(app_id writer-job)" CERTJOB="$(app_id cert-job)" STRANGER="$(app_id stranger-job)"
equal "five app registrations" "$(state '.apps | length')" 5
equal "five service principals" "$(state '.sps | length')" 5
equal "the API takes v2 tokens" "$(state '.apps[] | select(.appId == "'"$API_APP_ID"'") | .api.requestedAccessTokenVersion')" 2
equal "the API has the idtyp optional claim" \
  "$(state '.apps[] | select(.appId == "'"$API_APP_ID"'") | [.optionalClaims.accessToken[].name] | join(",")')" idtyp
equal "the API's application ID URI" "$(state '.apps[] | select(.appId == "'"$API_APP_ID"'") | .identifierUris | join(",")')" "api://$API_APP_ID"
equal "the API's app roles, for applications" \
  "$(state '.apps[] | select(.appId == "'"$API_APP_ID"'") | [.appRoles[] | select(.allowedMemberTypes == ["Application"]) | .value] | sort | join(",")')" \
  "Tasks.Read.All,Tasks.ReadWrite.All"
assignments() {
  jq -r '. as $s | [.assignments[] | . as $a
      | ($s.sps[] | select(.id == $a.principalId) | .displayName) + "=" +
        ($s.apps[] | select(.displayName == "m2m-entra-tasks-api") | .appRoles[] | select(.id == $a.appRoleId) | .value)]
      | sort | join(" ")' "$FAKE_AZ_STATE"
}
equal "app role assignments as in the demo directory, stranger included" "$(assignments)" \
  "m2m-entra-cert-job=Tasks.Read.All m2m-entra-reader-job=Tasks.Read.All m2m-entra-stranger-job=Tasks.Read.All m2m-entra-writer-job=Tasks.ReadWrite.All"

equal "api.env: authority host" "$(env_get "$OUT/api.env" API__ENTRA__AUTHORITY_HOST)" "https://login.microsoftonline.com"
equal "api.env: tenant" "$(env_get "$OUT/api.env" API__ENTRA__TENANTS)" "9d3f0b6e-2a4c-4e8b-b1f7-5c6d7e8f9a01"
equal "api.env: audiences are the client ID and the URI" "$(env_get "$OUT/api.env" API__AUTH__AUDIENCES)" "$API_APP_ID,api://$API_APP_ID"
equal "api.env: allowed clients, not the stranger" "$(env_get "$OUT/api.env" API__AUTH__ALLOWED_CLIENTS)" "$READER,$WRITER,$CERTJOB"
for c in reader:$READER writer:$WRITER stranger:$STRANGER; do
  short="${c%%:*}" id="${c#*:}"
  key_id="$(env_get "$OUT/registrations.env" "${short^^}_SECRET_KEY_ID")"
  equal "$short.env: client ID" "$(env_get "$OUT/$short.env" AZURE_CLIENT_ID)" "$id"
  equal "$short.env: the secret Entra generated" "$(env_get "$OUT/$short.env" AZURE_CLIENT_SECRET)" "$(state ".secrets[\"$key_id\"]")"
  equal "$short.env: public cloud authority" "$(env_get "$OUT/$short.env" AZURE_AUTHORITY_HOST)" "https://login.microsoftonline.com"
  equal "$short.toml: scope is the URI + /.default" "$(sed -n 's/^scope = "\(.*\)"$/\1/p' "$OUT/$short.toml" | sort -u)" "api://$API_APP_ID/.default"
done
equal "cert-job.env: certificate path in the container" "$(env_get "$OUT/cert-job.env" AZURE_CLIENT_CERTIFICATE_PATH)" /etc/mesh/cert-job.pem
check "cert-job.env holds no secret" bash -c "! grep -q AZURE_CLIENT_SECRET '$OUT/cert-job.env'"
check "cert-job.pem holds the certificate and its key" \
  bash -c "grep -q 'BEGIN CERTIFICATE' '$OUT/cert-job.pem' && grep -q 'BEGIN PRIVATE KEY' '$OUT/cert-job.pem'"
check "cert-job.crt holds no key" bash -c "! grep -q 'PRIVATE KEY' '$OUT/cert-job.crt'"
equal "the certificate uploaded is cert-job.crt" \
  "$(state '.apps[] | select(.appId == "'"$CERTJOB"'") | .keyCredentials[0].customKeyIdentifier')" \
  "$(openssl x509 -in "$OUT/cert-job.crt" -noout -fingerprint -sha1 | sed 's/.*=//; s/://g')"
check "the key in cert-job.pem belongs to the certificate" bash -c \
  "[[ \"\$(openssl x509 -in '$OUT/cert-job.pem' -noout -pubkey)\" == \"\$(openssl pkey -in '$OUT/cert-job.pem' -pubout)\" ]]"
leaked=0
for key_id in $(state '.secrets | keys[]'); do
  grep -qF "$(state ".secrets[\"$key_id\"]")" "$T/run1.log" "$T/calls.log" && leaked=1
done
equal "no secret in the script's output or in az's arguments" "$leaked" 0

echo "setup.sh, second run"
before="$(calls_count)"
cp "$FAKE_AZ_STATE" "$T/state.after-run1.json"
"$SETUP" >/dev/null 2>"$T/run2.log" || { cat "$T/run2.log"; bad "second run succeeds"; exit 1; }
ok "second run succeeds"
writes="$(calls_since "$before" | grep -E '"create"|"update"|"delete"|"reset"|"POST"|"PATCH"|"DELETE"' || true)"
equal "changes nothing in Entra but the token settings it owns (one PATCH)" \
  "$(grep -c . <<<"$writes")" 1
check "... and that PATCH is the v2 / idtyp one" grep -q requestedAccessTokenVersion <<<"$writes"
if [[ "$(jq -S 'del(.lag_seen)' "$FAKE_AZ_STATE")" == "$(jq -S 'del(.lag_seen)' "$T/state.after-run1.json")" ]]; then
  ok "same apps, roles, secrets, certificates and assignments"
else
  bad "same apps, roles, secrets, certificates and assignments"
fi
check "keeps the secrets" grep -q "client secret .* kept" "$T/run2.log"
check "keeps the certificate" grep -q "certificate .* kept" "$T/run2.log"
check "finds the assignments" grep -q "already assigned" "$T/run2.log"

echo "setup.sh, a lost out/reader.env and a lagging replica"
old_writer_secret="$(env_get "$OUT/writer.env" AZURE_CLIENT_SECRET)"
rm "$OUT/reader.env"
FAKE_AZ_STALE_READS=1 "$SETUP" >/dev/null 2>"$T/run3.log" || { cat "$T/run3.log"; bad "third run succeeds"; exit 1; }
ok "third run succeeds"
equal "reader-job gets a new secret, the old one stays valid" \
  "$(state '.apps[] | select(.appId == "'"$READER"'") | .passwordCredentials | length')" 2
equal "writer-job keeps its secret" "$(env_get "$OUT/writer.env" AZURE_CLIENT_SECRET)" "$old_writer_secret"
check "an assignment that exists already is accepted" grep -q "already assigned" "$T/run3.log"
equal "still four assignments" "$(state '.assignments | length')" 4

echo "setup.sh, without the right to assign app roles, then with it"
rm -rf "$OUT"
if FAKE_AZ_DENY_ASSIGN=1 FAKE_AZ_STATE="$T/state-denied.json" "$SETUP" >/dev/null 2>"$T/denied.log"; then
  bad "stops when Graph refuses the assignment"
else
  ok "stops when Graph refuses the assignment"
fi
check "shows Graph's reason" grep -q "Insufficient privileges" "$T/denied.log"
check "does not retry a refusal" bash -c "! grep -q 'not visible everywhere yet' '$T/denied.log'"
denied_secret="$(env_get "$OUT/reader.env" AZURE_CLIENT_SECRET)"
check "the secrets Entra generated are already in out/" test -n "$denied_secret"
FAKE_AZ_STATE="$T/state-denied.json" "$SETUP" >/dev/null 2>"$T/denied2.log" || bad "the rerun succeeds"
equal "the rerun keeps them" "$(env_get "$OUT/reader.env" AZURE_CLIENT_SECRET)" "$denied_secret"
equal "... without adding another" \
  "$(jq '[.apps[].passwordCredentials | length] | add' "$T/state-denied.json")" 3
equal "... and makes the four assignments" "$(jq '.assignments | length' "$T/state-denied.json")" 4
# Back to the first tenant's out/ for what follows.
rm -rf "$OUT"
"$SETUP" >/dev/null 2>"$T/run4.log" || { cat "$T/run4.log"; bad "setup.sh rewrites out/"; exit 1; }

echo "setup.sh, a named application ID URI"
if FAKE_AZ_STATE="$T/state-uri.json" MESH_OUT_DIR="$T/out-uri" MESH_API_ID_URI="api://tasks-api" \
  "$SETUP" >/dev/null 2>"$T/uri.log"; then
  ok "accepted (v2 tokens are set before the URI)"
else
  bad "accepted (v2 tokens are set before the URI): $(tail -n 3 "$T/uri.log")"
fi
uri_app="$(jq -r '.apps[] | select(.displayName == "m2m-entra-tasks-api") | .appId' "$T/state-uri.json")"
equal "api.env: audiences" "$(env_get "$T/out-uri/api.env" API__AUTH__AUDIENCES)" "$uri_app,api://tasks-api"
equal "reader.toml: scope" "$(sed -n 's/^scope = "\(.*\)"$/\1/p' "$T/out-uri/reader.toml" | sort -u)" "api://tasks-api/.default"
# The model refuses such a URI on an app that still takes v1 tokens, which is why the order matters.
v1_app="$(FAKE_AZ_STATE="$T/state-v1.json" az ad app create --display-name v1-app --query id -o tsv)"
if FAKE_AZ_STATE="$T/state-v1.json" az ad app update --id "$v1_app" --identifier-uris api://tasks-api 2>"$T/v1.log"; then
  bad "(model) the same URI on a v1 app is refused"
else
  check "(model) the same URI on a v1 app is refused" grep -q "Failed to add identifier URI" "$T/v1.log"
fi

echo "the services read what setup.sh wrote"
mapfile -t api_env < <(env_list "$OUT/api.env")
if env "${api_env[@]}" "$BIN/api-service" check >"$T/check.log" 2>&1; then
  ok "api-service check accepts api.env"
else
  bad "api-service check accepts api.env: $(cat "$T/check.log")"
fi
mapfile -t api_env_broken < <(env_list "$OUT/api.env" | grep -v '^API__AUTH__ALLOWED_CLIENTS=')
if env "${api_env_broken[@]}" "$BIN/api-service" check >"$T/check.log" 2>&1; then
  bad "api-service check refuses api.env without the allow-list"
else
  check "api-service check refuses api.env without the allow-list, naming the key" \
    grep -q "auth.allowed_clients" "$T/check.log"
fi

echo "the mesh, with the tenant setup.sh registered served by entra-emulator"
mkdir -p "$T/emu"
python3 "$TEST/fake_az.py" export-directory "$T/emu"
EMULATOR__DIRECTORY="$T/emu/directory.toml" EMULATOR__DATA_DIR="$T/emu/data" EMULATOR__SERVER__HTTPS_PORT=0 \
  "$BIN/entra-emulator" serve --ready-file "$T/emu.ready" >"$T/emu.log" 2>&1 &
PIDS+=($!)
wait_for() { for _ in $(seq 1 300); do [[ -s "$1" ]] && return 0; sleep 0.1; done; return 1; }
wait_for "$T/emu.ready" || { cat "$T/emu.log"; bad "emulator starts"; exit 1; }
IDP="$(jq -r .public_url "$T/emu.ready")"
CA="$(jq -r .ca_cert "$T/emu.ready")"
ok "emulator starts with the exported tenant ($IDP)"

env "${api_env[@]}" API__ENTRA__AUTHORITY_HOST="$IDP" API__HTTP__EXTRA_CA_FILE="$CA" \
  API__SERVER__HOST=127.0.0.1 API__SERVER__PORT=0 API__DATABASE__PATH="$T/tasks.db" \
  "$BIN/api-service" serve --ready-file "$T/api.ready" >"$T/api.log" 2>&1 &
PIDS+=($!)
wait_for "$T/api.ready" || { cat "$T/api.log"; bad "api-service starts"; exit 1; }
API="$(jq -r .url "$T/api.ready")"
for _ in $(seq 1 100); do curl -fs "$API/readyz" >/dev/null && break; sleep 0.1; done
check "api-service is ready with api.env (keys fetched)" curl -fs "$API/readyz"

caller() { # SHORT COMMAND... : caller-service with SHORT.env and SHORT.toml, pointed at the local mesh
  local short="$1" cfg="$T/$1.toml"
  shift
  sed "s#http://api:8080#$API#" "$OUT/$short.toml" >"$cfg"
  mapfile -t vars < <(env_list "$OUT/$short.env" | sed "s#^AZURE_CLIENT_CERTIFICATE_PATH=/etc/mesh/#AZURE_CLIENT_CERTIFICATE_PATH=$OUT/#")
  env "${vars[@]}" AZURE_AUTHORITY_HOST="$IDP" CALLER__HTTP__EXTRA_CA_FILE="$CA" \
    "$BIN/caller-service" --config "$cfg" "$@"
}
for run in "writer create-task" "reader list-tasks" "reader whoami" "cert-job list-tasks"; do
  read -r short job <<<"$run"
  if caller "$short" once "$job" >"$T/$short.log" 2>&1; then
    ok "$short: 'once $job' succeeds with its .env and .toml"
  else
    bad "$short: 'once $job': $(tail -n 5 "$T/$short.log")"
  fi
done
if caller stranger once list-tasks >"$T/stranger.log" 2>&1; then
  bad "stranger: 'once list-tasks' fails"
else
  ok "stranger: 'once list-tasks' fails"
  check "... with the API's 403 client_not_allowed" grep -q "client_not_allowed" "$T/stranger.log"
fi
if caller stranger token --scope "api://$API_APP_ID/.default" >"$T/stranger-token.json" 2>"$T/stranger-token.log"; then
  equal "stranger's token is for the API" "$(jq -r .audience "$T/stranger-token.json")" "$API_APP_ID"
  equal "stranger's token holds Tasks.Read.All" "$(jq -r '.roles | join(",")' "$T/stranger-token.json")" "Tasks.Read.All"
else
  bad "stranger gets a token: $(cat "$T/stranger-token.log")"
fi
metrics="$(curl -fs "$API/metrics")"
check "the API refused the stranger for its allow-list" grep -qE '^api_auth_outcomes_total\{outcome="client_not_allowed"\} [1-9]' <<<"$metrics"
check "the writer created a task (201)" grep -qE '^api_http_requests_total\{.*method="POST".*status="201".*\} 1' <<<"$metrics"
others="$(grep -E '^api_auth_outcomes_total\{outcome="[a-z_]+"\} [1-9]' <<<"$metrics" |
  grep -vE 'outcome="(accepted|client_not_allowed)"' || true)"
equal "no token was refused for any other reason" "$others" ""

echo "cleanup.sh"
if "$CLEANUP" </dev/null >/dev/null 2>"$T/clean0.log"; then
  bad "without --yes and without a terminal, refuses"
else
  check "without --yes and without a terminal, refuses" grep -q "run with --yes" "$T/clean0.log"
fi
equal "... and deletes nothing" "$(state '.apps | length')" 5
"$CLEANUP" --yes --purge >/dev/null 2>"$T/clean1.log" || { cat "$T/clean1.log"; bad "cleanup --yes --purge succeeds"; }
equal "no app registrations left" "$(state '.apps | length')" 0
equal "no service principals or assignments left" "$(state '(.sps | length) + (.assignments | length)')" 0
equal "nothing left in deleted items" "$(state '.deleted | length')" 0
check "out/ removed" test ! -e "$OUT"
check "a second cleanup has nothing to do" bash -c "'$CLEANUP' --yes 2>&1 | grep -q 'Nothing to do'"

echo
echo "$passed passed, $failed failed"
((failed == 0))
