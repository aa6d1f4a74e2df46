#!/usr/bin/env bash
# The caller's token sidecar against unmodified Python clients: plain `requests` with no token
# code through the egress listener, 50 of them at once from a cold start, and azure-identity's
# ManagedIdentityCredential with only IDENTITY_ENDPOINT / IDENTITY_HEADER set; and the emulator's
# own IMDS endpoint for a managed identity of its directory (AZURE_POD_IDENTITY_AUTHORITY_HOST),
# and azure-identity's ClientSecretCredential against the emulator itself. Starts the
# emulator, the tasks API and the caller (debug builds) on free loopback ports; nothing leaves
# the machine but the first-use install of azure-identity and requests (PyPI) into .venv/sidecar.
#
#   scripts/sidecar-interop.sh
#
# Output: `PASS`/`FAIL` lines from scripts/sidecar_interop.py, then `N passed, M failed`; the exit
# status is 1 if anything failed. Needs python3 with venv (scripts/lib/venv.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv/sidecar
. scripts/lib/venv.sh
python_venv sidecar-interop "$venv" 'azure.identity, requests' 'azure-identity>=1.19,<2' 'requests>=2.31,<3'

cargo build --quiet --locked -p entra-emulator -p api-service -p caller-service
SCRIPT=sidecar-interop
. scripts/lib/procs.sh

# The emulator also answers IMDS's managed-identity endpoint on a plain-HTTP port, for the
# directory's managed identity nightly-mi.
read -r emulator_http_port operator_port sidecar_port <<<"$(free_ports 3)"
EMULATOR__DATA_DIR="$work/emulator" EMULATOR__SERVER__HTTPS_PORT=0 EMULATOR__LOG__FILTER=warn \
  EMULATOR__SERVER__HTTP_PORT="$emulator_http_port" EMULATOR__MANAGED_IDENTITY__IMDS=true \
  ./target/debug/entra-emulator serve --ready-file "$work/emulator.json" 2>"$work/emulator.log" &
pids+=($!)
wait_for "$work/emulator.json" "$!" entra-emulator "$work/emulator.log"
idp=$(json "$work/emulator.json" public_url)
ca=$(json "$work/emulator.json" ca_cert)

API__SERVER__PORT=0 API__ENTRA__AUTHORITY_HOST="$idp" API__HTTP__EXTRA_CA_FILE="$ca" \
  API__DATABASE__PATH="$work/tasks.db" API__LOG__FILTER=warn \
  ./target/debug/api-service --config api-service/demo/api.toml serve --ready-file "$work/api.json" \
  2>"$work/api.log" &
pids+=($!)
wait_for "$work/api.json" "$!" api-service "$work/api.log"
api=$(json "$work/api.json" url)

# The demo caller's identity and sidecar, pointed at this run's emulator and API, with no jobs.
identity_header=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')
{
  demo_identity "$idp"
  cat <<CALLER_TOML
[http]
extra_ca_file = "$ca"

[server]
port = $operator_port

[sidecar]
port = $sidecar_port
resources = ["api://tasks-api"]

[[sidecar.upstreams]]
name = "tasks"
url = "$api"
scope = "api://tasks-api/.default"
CALLER_TOML
} >"$work/caller.toml"
CALLER__SIDECAR__IDENTITY_HEADER="$identity_header" CALLER__LOG__FILTER=warn \
  ./target/debug/caller-service --config "$work/caller.toml" run &
pids+=($!)

# The demo reader's secret, as the directory holds it (DEMO), for the client-secret check.
reader_secret=$(grep -m1 '^client_secret' "$work/caller.toml" | cut -d'"' -f2)
SIDECAR_IDENTITY_HEADER="$identity_header" SIDECAR_INTEROP_CLIENT_SECRET="$reader_secret" \
  "$venv/bin/python" scripts/sidecar_interop.py \
  --sidecar "http://127.0.0.1:$sidecar_port" \
  --operator "http://127.0.0.1:$operator_port" \
  --api "$api" \
  --client-id "$(grep -m1 '^client_id' "$work/caller.toml" | cut -d'"' -f2)" \
  --imds-host "http://127.0.0.1:$emulator_http_port" \
  --authority "$idp" --ca-file "$ca" \
  --tenant "$(grep -m1 '^tenant_id' "$work/caller.toml" | cut -d'"' -f2)" \
  --imds-client-id "$(python3 -c 'import re,sys; t=open(sys.argv[1]).read(); print(re.search(r"\[\[tenants.managed_identities\]\]\nname = \"nightly-mi\"\nclient_id = \"([^\"]+)\"", t).group(1))' entra-emulator/demo/directory.toml)"

# The Rust azure_identity's ManagedIdentityCredential (App Service source), unmodified: a second
# caller-service whose credential is `managed_identity`, with only the two variables set, asks the
# sidecar for a token and describes it.
described=$(env -u AZURE_CLIENT_ID -u AZURE_TENANT_ID -u AZURE_CLIENT_SECRET \
  IDENTITY_ENDPOINT="http://127.0.0.1:$sidecar_port/msi/token" IDENTITY_HEADER="$identity_header" \
  CALLER__IDENTITY__CREDENTIAL=managed_identity CALLER__LOG__FILTER=warn \
  ./target/debug/caller-service token --scope api://tasks-api/.default 2>&1) || true
if python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["kind"]=="app" and "Tasks.Read.All" in d["roles"], d' "$described" 2>/dev/null; then
  echo "PASS Rust azure_identity ManagedIdentityCredential: an app token with the reader's role"
else
  echo "FAIL Rust azure_identity ManagedIdentityCredential: $described"
  exit 1
fi
