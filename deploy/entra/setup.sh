#!/usr/bin/env bash
# Registers the mesh in a real Microsoft Entra ID tenant, the same shape as the emulator's demo
# directory (entra-emulator/demo/directory.toml), and writes the services' configuration.
#
#   az login --tenant <tenant> --allow-no-subscriptions
#   deploy/entra/setup.sh
#   MESH_ENV=deploy/entra/out docker compose -f docker-compose.yml -f docker-compose.entra.yml up
#   deploy/entra/cleanup.sh            # deletes what this created
#
# What it creates (display names are $MESH_APP_PREFIX + the emulator's names):
#   tasks-api     the API: app roles Tasks.Read.All and Tasks.ReadWrite.All (allowed member type
#                 Application), api.requestedAccessTokenVersion = 2, the idtyp optional claim on
#                 access tokens, application ID URI api://{appId} (or $MESH_API_ID_URI), a
#                 service principal.
#   reader-job    client secret, assigned Tasks.Read.All
#   writer-job    client secret, assigned Tasks.ReadWrite.All
#   cert-job      certificate (generated here with openssl), assigned Tasks.Read.All
#   stranger-job  client secret, assigned Tasks.Read.All, and NOT on the API's allow-list: Entra
#                 gives it a token with the role, and the API refuses it (403 client_not_allowed).
# Role assignments are made directly on the API's service principal (Graph appRoleAssignedTo),
# which is the grant itself: no admin consent step is needed.
#
# It is safe to run again: apps are found by display name, role IDs are read back from the app,
# existing assignments are kept, and a secret or certificate is reused while out/ still holds it,
# Entra still has it and it is valid for another $MESH_CREDENTIAL_MIN_DAYS days.
#
# Who can run it: creating app registrations needs the tenant's "users can register applications"
# setting or the Application Developer role; app role assignments need Cloud Application
# Administrator or Application Administrator (Graph: AppRoleAssignment.ReadWrite.All).
#
# Needs: bash 4+, az (2.37 or later, the Microsoft Graph based one), jq, openssl.
#
# Output, the contract with docker-compose.yml (directory mode 700, files mode 600):
#   out/api.env        API__ENTRA__AUTHORITY_HOST, API__ENTRA__TENANTS, API__AUTH__AUDIENCES,
#                      API__AUTH__ALLOWED_CLIENTS (lists comma-separated; no secret)
#   out/reader.env     AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET, AZURE_AUTHORITY_HOST
#   out/writer.env     same, for writer-job
#   out/stranger.env   same, for stranger-job
#   out/cert-job.env   same with AZURE_CLIENT_CERTIFICATE_PATH instead of a secret
#   out/{reader,writer,stranger,cert-job}.toml   each caller's --config: its [[jobs]], as in
#                      deploy/emulator with the real scope
#   out/cert-job.pem   cert-job's certificate AND private key (what AZURE_CLIENT_CERTIFICATE_PATH
#                      names); out/cert-job.crt is the certificate alone, as uploaded to Entra
#   out/registrations.env   the IDs created (tenant, apps, service principals, roles, key IDs),
#                      for people; no secrets
# Compose reads ${MESH_ENV}/{api,reader,writer,stranger}.env with env_file and passes
# ${MESH_ENV}/{reader,writer,stranger}.toml as each caller's --config. The certificate reaches the
# container by mounting ${MESH_ENV} read-only at $MESH_CONTAINER_DIR (default /etc/mesh):
# cert-job.env says AZURE_CLIENT_CERTIFICATE_PATH=/etc/mesh/cert-job.pem. The directory is 700 and
# the files 600, owned by whoever ran this script: a container reading them (the callers' .toml,
# cert-job.pem) must run as that user (compose `user: "<uid>:<gid>"`); the images' own user
# (10001) cannot. The .env files are read by compose on the host, so they need nothing.
#
# Settings (environment):
#   MESH_APP_PREFIX           display-name prefix                     default "m2m-entra-"
#   MESH_OUT_DIR              where the files go                      default deploy/entra/out
#   MESH_CONTAINER_DIR        where compose mounts MESH_OUT_DIR       default /etc/mesh
#   MESH_API_BASE_URL         the API as the callers reach it         default http://api:8080
#   MESH_API_ID_URI           application ID URI                      default api://{appId}
#                             (anything else must pass the tenant's identifier URI policy)
#   MESH_SECRET_DAYS          lifetime of new client secrets          default 180
#   MESH_CERT_DAYS            lifetime of a new certificate           default 180 (at most 365:
#                             az registers a certificate credential for one year)
#   MESH_CREDENTIAL_MIN_DAYS  renew a credential that expires sooner  default 30
#   MESH_RETRY_ATTEMPTS, MESH_RETRY_DELAY_SECS
#                             retries while a new object replicates   default 30 x 10 s
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly SCRIPT_DIR
readonly PREFIX="${MESH_APP_PREFIX-m2m-entra-}"
readonly OUT_DIR="${MESH_OUT_DIR:-$SCRIPT_DIR/out}"
readonly CONTAINER_DIR="${MESH_CONTAINER_DIR:-/etc/mesh}"
readonly API_BASE_URL="${MESH_API_BASE_URL:-http://api:8080}"
readonly API_ID_URI_WANTED="${MESH_API_ID_URI:-}"
readonly SECRET_DAYS="${MESH_SECRET_DAYS:-180}"
readonly CERT_DAYS="${MESH_CERT_DAYS:-180}"
readonly MIN_DAYS="${MESH_CREDENTIAL_MIN_DAYS:-30}"
readonly RETRY_ATTEMPTS="${MESH_RETRY_ATTEMPTS:-30}"
readonly RETRY_DELAY="${MESH_RETRY_DELAY_SECS:-10}"

readonly ROLE_READ="Tasks.Read.All"
readonly ROLE_WRITE="Tasks.ReadWrite.All"

# What Entra and Graph answer while a just-created object has not reached every replica yet (no
# documented bound; minutes are normal), or when throttled. Only these are retried: anything else
# (no permission, a policy refusal) fails at once with Graph's message.
readonly TRANSIENT='does not exist or one of its queried reference-property objects are not present|Request_ResourceNotFound|Not a valid reference update|Permission being assigned was not found on application|does not reference a valid application object|NoSuchDirectoryObject|TooManyRequests|Too Many Requests|Service Unavailable|ServiceUnavailable|Gateway Timeout|temporarily unavailable'

log() { printf '%s\n' "$*" >&2; }
die() { log "setup.sh: $*"; exit 1; }

((BASH_VERSINFO[0] >= 4)) || die "bash 4 or later is needed (macOS: brew install bash)"
for tool in az jq openssl; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is required but not on PATH"
done
[[ "$PREFIX" =~ ^[A-Za-z0-9._\ -]*$ ]] ||
  die "MESH_APP_PREFIX may hold only letters, digits, space, '.', '_' and '-' (it goes into a Graph filter)"
for pair in SECRET_DAYS:MESH_SECRET_DAYS CERT_DAYS:MESH_CERT_DAYS MIN_DAYS:MESH_CREDENTIAL_MIN_DAYS \
  RETRY_ATTEMPTS:MESH_RETRY_ATTEMPTS RETRY_DELAY:MESH_RETRY_DELAY_SECS; do
  var="${pair%%:*}"
  [[ "${!var}" =~ ^[0-9]+$ ]] || die "${pair#*:} must be a whole number, not '${!var}'"
done
((CERT_DAYS >= 1 && CERT_DAYS <= 365)) || die "MESH_CERT_DAYS must be between 1 and 365"
((SECRET_DAYS >= 1)) || die "MESH_SECRET_DAYS must be at least 1"
((MIN_DAYS < SECRET_DAYS && MIN_DAYS < CERT_DAYS)) ||
  die "MESH_CREDENTIAL_MIN_DAYS must be below MESH_SECRET_DAYS and MESH_CERT_DAYS, or every run would renew"
if [[ -n "$API_ID_URI_WANTED" && ! "$API_ID_URI_WANTED" =~ ^(api|https)://[A-Za-z0-9._~:/-]+$ ]]; then
  die "MESH_API_ID_URI must look like api://name or https://host/path, not '$API_ID_URI_WANTED'"
fi
[[ "$API_BASE_URL" =~ ^https?://[A-Za-z0-9._:-]+$ ]] ||
  die "MESH_API_BASE_URL must be a scheme and host[:port] such as http://api:8080"

umask 077
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# ---- helpers ------------------------------------------------------------------------------------

new_uuid() {
  local id
  if command -v uuidgen >/dev/null 2>&1; then
    id="$(uuidgen)"
  elif [[ -r /proc/sys/kernel/random/uuid ]]; then
    id="$(cat /proc/sys/kernel/random/uuid)"
  else
    id="$(python3 -c 'import uuid; print(uuid.uuid4())')"
  fi
  printf '%s' "$id" | tr '[:upper:]' '[:lower:]'
}

# An RFC 3339 UTC time N days from now (GNU date, then BSD date).
days_from_now() {
  date -u -d "+$1 days" +%Y-%m-%dT%H:%M:%SZ 2>/dev/null || date -u -v+"$1"d +%Y-%m-%dT%H:%M:%SZ
}

# with_retry WHAT COMMAND...: the command's stdout, retrying while the error is a replication or
# throttling answer; any other error is shown and returns 1 (the caller stops). An error matching
# $TOLERATE returns 3 without a word (the caller decides). Graph's message stays in $WORK/stderr.
TOLERATE=""
with_retry() {
  local what="$1" attempt=1 out
  shift
  while :; do
    if out="$("$@" 2>"$WORK/stderr")"; then
      printf '%s' "$out"
      return 0
    fi
    if [[ -n "$TOLERATE" ]] && grep -qiE "$TOLERATE" "$WORK/stderr"; then
      return 3
    fi
    if ((attempt >= RETRY_ATTEMPTS)) || ! grep -qiE "$TRANSIENT" "$WORK/stderr"; then
      log "setup.sh: $what failed:"
      sed 's/^/    /' "$WORK/stderr" >&2
      return 1
    fi
    log "    $what: not visible everywhere yet (attempt $attempt of $RETRY_ATTEMPTS), retrying in ${RETRY_DELAY}s"
    attempt=$((attempt + 1))
    sleep "$RETRY_DELAY"
  done
}

# A value for a compose env_file line: plain when it is plainly safe, else single-quoted (taken
# literally by compose, no $ interpolation).
env_value() {
  if [[ "$1" =~ ^[A-Za-z0-9._~:/,+-]*$ ]]; then
    printf '%s' "$1"
  elif [[ "$1" != *"'"* && "$1" != *$'\n'* ]]; then
    printf "'%s'" "$1"
  else
    die "a value holds a quote or a newline and cannot be written to an env file"
  fi
}

# write_out NAME: stdin to $OUT_DIR/NAME, mode 600, replaced atomically.
write_out() {
  local tmp
  tmp="$(mktemp "$OUT_DIR/.$1.XXXXXX")"
  cat >"$tmp"
  chmod 600 "$tmp"
  mv -f "$tmp" "$OUT_DIR/$1"
}

# The value of KEY in an env-style file we wrote earlier (never sourced: it is only read).
file_value() {
  [[ -f "$1" ]] || return 0
  sed -n "s/^$2=//p" "$1" | tail -n 1 | sed "s/^'\(.*\)'\$/\1/"
}

# find_app NAME: "appId objectId" of the one app registration with that display name, or nothing.
find_app() {
  local rows
  rows="$(az ad app list --filter "displayName eq '$1'" --query "[].[appId, id]" -o tsv)"
  case "$(grep -c . <<<"$rows" || true)" in
    0) ;;
    1) tr '\t' ' ' <<<"$rows" ;;
    *) die "more than one app registration is named '$1'; delete the extras or choose another MESH_APP_PREFIX" ;;
  esac
}

# ensure_app NAME [az ad app create options...]: "appId objectId", creating the app if needed.
ensure_app() {
  local name="$1" found ids
  shift
  found="$(find_app "$name")"
  if [[ -n "$found" ]]; then
    log "  app $name: exists (appId ${found%% *})"
    printf '%s' "$found"
    return 0
  fi
  ids="$(az ad app create --display-name "$name" --sign-in-audience AzureADMyOrg "$@" \
    --query "[appId, id]" -o tsv)" || die "creating app registration $name failed (see above)"
  ids="$(tr '\n' ' ' <<<"$ids")"
  ids="${ids% }"
  log "  app $name: created (appId ${ids%% *})"
  printf '%s' "$ids"
}

# ensure_sp APPID NAME: the object ID of the app's service principal, creating it if needed.
ensure_sp() {
  local app_id="$1" name="$2" sp
  sp="$(az ad sp list --filter "appId eq '$app_id'" --query "[0].id" -o tsv)"
  if [[ -n "$sp" ]]; then
    log "  service principal of $name: exists ($sp)"
  else
    sp="$(with_retry "creating the service principal of $name" \
      az ad sp create --id "$app_id" --query id -o tsv)" || exit 1
    log "  service principal of $name: created ($sp)"
  fi
  printf '%s' "$sp"
}

# ---- 0. who and where ---------------------------------------------------------------------------

az_version="$(az version --query '"azure-cli"' -o tsv 2>/dev/null || true)"
[[ -n "$az_version" ]] || die "cannot run 'az version'; is the Azure CLI installed?"
if [[ "$(printf '%s\n%s\n' 2.37.0 "$az_version" | sort -V | head -n 1)" != "2.37.0" ]]; then
  die "az $az_version is too old: 2.37.0 or later (Microsoft Graph based 'az ad') is needed"
fi

account="$(az account show --query "[tenantId, tenantDisplayName, user.name]" -o tsv 2>"$WORK/stderr")" ||
  die "az is not logged in ($(head -n 1 "$WORK/stderr")). Run: az login --tenant <tenant ID or domain> --allow-no-subscriptions"
{ read -r TENANT_ID; read -r TENANT_NAME; read -r SIGNED_IN_AS; } <<<"$account" || true
[[ "$TENANT_NAME" == "None" ]] && TENANT_NAME=""
[[ "$TENANT_ID" =~ ^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$ ]] ||
  die "az account show gave no tenant ID"
AUTHORITY_HOST="$(az cloud show --query endpoints.activeDirectory -o tsv)"
AUTHORITY_HOST="${AUTHORITY_HOST%/}"
GRAPH="$(az cloud show --query endpoints.microsoftGraphResourceId -o tsv)"
GRAPH="${GRAPH%/}/v1.0"
[[ "$AUTHORITY_HOST" == https://* && "$GRAPH" == https://* ]] ||
  die "az cloud show gave no login or Microsoft Graph endpoint"

log "Tenant:       $TENANT_ID (${TENANT_NAME:-no display name})"
log "Signed in as: ${SIGNED_IN_AS:-unknown}"
log "Cloud:        $AUTHORITY_HOST, $GRAPH"
log "App names:    ${PREFIX}tasks-api, ${PREFIX}reader-job, ${PREFIX}writer-job, ${PREFIX}cert-job, ${PREFIX}stranger-job"

mkdir -p "$OUT_DIR"
chmod 700 "$OUT_DIR"
readonly STATE="$OUT_DIR/registrations.env"
if [[ -f "$STATE" ]]; then
  previous_tenant="$(file_value "$STATE" TENANT_ID)"
  [[ -z "$previous_tenant" || "$previous_tenant" == "$TENANT_ID" ]] ||
    die "$OUT_DIR was written for tenant $previous_tenant, not $TENANT_ID: run cleanup.sh against that tenant, or set MESH_OUT_DIR"
fi

# ---- 1. the API ---------------------------------------------------------------------------------

log ""
log "The API"
API_NAME="${PREFIX}tasks-api"
# App roles are application permissions when allowedMemberTypes holds "Application": assigned to a
# client's service principal, they reach its app-only tokens as the `roles` claim. (Scopes would be
# delegated permissions, for tokens issued on behalf of a user: not this API's business.)
role_json() { # ID VALUE DISPLAY DESCRIPTION
  jq -n --arg id "$1" --arg value "$2" --arg display "$3" --arg description "$4" \
    '{allowedMemberTypes: ["Application"], id: $id, value: $value, displayName: $display,
      description: $description, isEnabled: true}'
}
ROLE_SPECS=(
  "$ROLE_READ|Read all tasks|Lets a client application list and read every task."
  "$ROLE_WRITE|Read and write all tasks|Lets a client application create, change and delete every task."
)

found="$(find_app "$API_NAME")"
if [[ -z "$found" ]]; then
  # New app: fresh role IDs, kept from now on (an enabled role's ID cannot change).
  roles="[]"
  for spec in "${ROLE_SPECS[@]}"; do
    IFS='|' read -r value display description <<<"$spec"
    roles="$(jq --argjson role "$(role_json "$(new_uuid)" "$value" "$display" "$description")" \
      '. + [$role]' <<<"$roles")"
  done
  printf '%s' "$roles" >"$WORK/app-roles.json"
  ids="$(ensure_app "$API_NAME" --app-roles "@$WORK/app-roles.json")"
  read -r API_APP_ID API_OBJECT_ID <<<"$ids"
else
  read -r API_APP_ID API_OBJECT_ID <<<"$found"
  log "  app $API_NAME: exists (appId $API_APP_ID)"
  # Keep every role already there (Graph refuses to drop an enabled one) and add what is missing.
  roles="$(az ad app show --id "$API_OBJECT_ID" --query appRoles -o json)"
  added=0
  for spec in "${ROLE_SPECS[@]}"; do
    IFS='|' read -r value display description <<<"$spec"
    if [[ -z "$(jq -r --arg v "$value" '.[] | select(.value == $v) | .id' <<<"$roles")" ]]; then
      roles="$(jq --argjson role "$(role_json "$(new_uuid)" "$value" "$display" "$description")" \
        '. + [$role]' <<<"$roles")"
      added=1
    fi
  done
  if ((added)); then
    printf '%s' "$roles" >"$WORK/app-roles.json"
    with_retry "adding app roles to $API_NAME" \
      az ad app update --id "$API_OBJECT_ID" --app-roles "@$WORK/app-roles.json" >/dev/null || exit 1
    log "  app roles: added the missing ones"
  fi
fi
ROLE_READ_ID="$(jq -r --arg v "$ROLE_READ" '.[] | select(.value == $v) | .id' <<<"$roles")"
ROLE_WRITE_ID="$(jq -r --arg v "$ROLE_WRITE" '.[] | select(.value == $v) | .id' <<<"$roles")"
[[ -n "$ROLE_READ_ID" && -n "$ROLE_WRITE_ID" ]] || die "could not read back the app role IDs of $API_NAME"
log "  app roles: $ROLE_READ $ROLE_READ_ID, $ROLE_WRITE $ROLE_WRITE_ID"

# v2 access tokens (aud = the API's client ID GUID, iss = {authority}/{tenant}/v2.0), and the idtyp
# optional claim so that an app-only token says `idtyp: app` (and a user token `idtyp: user`, with
# include_user_token) instead of the API inferring it. Set before the identifier URI: the tenant's
# identifier URI policies are lenient with apps that take v2 tokens. This app's optionalClaims and
# api settings are owned by this script; the PATCH is the same every run.
token_settings='{"api":{"requestedAccessTokenVersion":2},"optionalClaims":{"accessToken":[{"name":"idtyp","source":null,"essential":false,"additionalProperties":["include_user_token"]}],"idToken":[],"saml2Token":[]}}'
with_retry "setting v2 tokens and the idtyp claim on $API_NAME" \
  az rest --method PATCH --uri "$GRAPH/applications/$API_OBJECT_ID" \
  --headers "Content-Type=application/json" --body "$token_settings" >/dev/null || exit 1
log "  tokens: requestedAccessTokenVersion 2, optional claim idtyp"

# The application ID URI: the `resource` part of the callers' scope ({uri}/.default). api://{appId}
# is always accepted; since 2025 Microsoft turns on a default tenant policy refusing new URIs that
# carry no tenant ID, app ID or verified domain (such as the emulator's api://tasks-api).
API_ID_URI="${API_ID_URI_WANTED:-api://$API_APP_ID}"
current_uris="$(az ad app show --id "$API_OBJECT_ID" --query identifierUris -o json)"
if [[ "$(jq --arg u "$API_ID_URI" 'any(.[]; . == $u)' <<<"$current_uris")" != "true" ]]; then
  mapfile -t uris < <(jq -r --arg u "$API_ID_URI" '. + [$u] | .[]' <<<"$current_uris")
  if ! with_retry "setting the application ID URI of $API_NAME" \
    az ad app update --id "$API_OBJECT_ID" --identifier-uris "${uris[@]}" >/dev/null; then
    if grep -qiE 'identifier-uri-addition-error|Failed to add identifier URI' "$WORK/stderr"; then
      die "the tenant's identifier URI policy refused $API_ID_URI: unset MESH_API_ID_URI to use api://$API_APP_ID, use a verified domain, or ask an administrator for an exemption (https://aka.ms/identifier-uri-addition-error)"
    fi
    exit 1
  fi
  log "  application ID URI: $API_ID_URI (set)"
else
  log "  application ID URI: $API_ID_URI"
fi
API_SP_ID="$(ensure_sp "$API_APP_ID" "$API_NAME")"

# ---- 2. the callers -----------------------------------------------------------------------------

log ""
log "The callers"
# (A plain assignment first: a failure inside $(...) must stop the script, which
# `read <<<"$(...)"` would hide.)
ids="$(ensure_app "${PREFIX}reader-job")"
read -r READER_APP_ID READER_OBJECT_ID <<<"$ids"
ids="$(ensure_app "${PREFIX}writer-job")"
read -r WRITER_APP_ID WRITER_OBJECT_ID <<<"$ids"
ids="$(ensure_app "${PREFIX}cert-job")"
read -r CERT_APP_ID CERT_OBJECT_ID <<<"$ids"
ids="$(ensure_app "${PREFIX}stranger-job")"
read -r STRANGER_APP_ID STRANGER_OBJECT_ID <<<"$ids"
READER_SP_ID="$(ensure_sp "$READER_APP_ID" "${PREFIX}reader-job")"
WRITER_SP_ID="$(ensure_sp "$WRITER_APP_ID" "${PREFIX}writer-job")"
CERT_SP_ID="$(ensure_sp "$CERT_APP_ID" "${PREFIX}cert-job")"
STRANGER_SP_ID="$(ensure_sp "$STRANGER_APP_ID" "${PREFIX}stranger-job")"

# ---- 3. credentials -----------------------------------------------------------------------------

log ""
log "Credentials"
renew_before="$(days_from_now "$MIN_DAYS")"
generated="# Written by deploy/entra/setup.sh for tenant $TENANT_ID on $(date -u +%Y-%m-%dT%H:%M:%SZ)."

# caller_env FILE NAME APPID SECRET KEYID: a caller's environment. A secret is written the moment
# Entra has shown it, so a run that fails later loses nothing; its key ID rides along as a comment
# for the next run. Without a secret, the certificate path inside the container.
caller_env() {
  {
    printf '%s\n' "$generated"
    printf '# %s: the Azure SDK variables caller-service reads. Keep this file secret.\n' "$2"
    printf 'AZURE_TENANT_ID=%s\n' "$TENANT_ID"
    printf 'AZURE_CLIENT_ID=%s\n' "$3"
    if [[ -n "$4" ]]; then
      printf '# AZURE_CLIENT_SECRET key ID: %s\n' "$5"
      printf 'AZURE_CLIENT_SECRET=%s\n' "$(env_value "$4")"
    else
      printf '# cert-job.pem (certificate and key) from this directory, mounted read-only.\n'
      printf 'AZURE_CLIENT_CERTIFICATE_PATH=%s\n' "$CONTAINER_DIR/cert-job.pem"
    fi
    printf 'AZURE_AUTHORITY_HOST=%s\n' "$AUTHORITY_HOST"
  } | write_out "$1.env"
}

# ensure_secret SHORT NAME APPID OBJECTID: writes out/SHORT.env and sets SECRET_KEY_ID. Reuses the
# secret in out/SHORT.env when Entra still holds its key ID for this app and it outlives MIN_DAYS;
# otherwise adds a new one (Graph addPassword: Entra generates it and shows it once). Old secrets
# are left in place, so a caller still running with one keeps working; they expire on their own.
ensure_secret() {
  local short="$1" name="$2" app_id="$3" object_id="$4" key_id expires answer
  SECRET="$(file_value "$OUT_DIR/$short.env" AZURE_CLIENT_SECRET)"
  key_id=""
  if [[ -f "$OUT_DIR/$short.env" ]]; then
    key_id="$(sed -n 's/^# AZURE_CLIENT_SECRET key ID: //p' "$OUT_DIR/$short.env" | tail -n 1)"
  fi
  if [[ -n "$SECRET" && -n "$key_id" && "$(file_value "$OUT_DIR/$short.env" AZURE_CLIENT_ID)" == "$app_id" ]]; then
    expires="$(az ad app show --id "$object_id" \
      --query "passwordCredentials[?keyId=='$key_id'] | [0].endDateTime" -o tsv)"
    if [[ -n "$expires" && "$expires" > "$renew_before" ]]; then
      SECRET_KEY_ID="$key_id"
      caller_env "$short" "$name" "$app_id" "$SECRET" "$SECRET_KEY_ID"
      log "  $name: client secret $key_id kept (expires $expires)"
      return 0
    fi
  fi
  jq -n --arg name "${PREFIX}mesh setup.sh" --arg until "$(days_from_now "$SECRET_DAYS")" \
    '{passwordCredential: {displayName: $name, endDateTime: $until}}' >"$WORK/password.json"
  answer="$(with_retry "adding a client secret to $name" \
    az rest --method POST --uri "$GRAPH/applications/$object_id/addPassword" \
    --headers "Content-Type=application/json" --body "@$WORK/password.json" \
    --query "[keyId, secretText]" -o tsv)" || exit 1
  { read -r SECRET_KEY_ID; read -r SECRET; } <<<"$answer" || true
  [[ -n "$SECRET_KEY_ID" && -n "$SECRET" ]] || die "Graph returned no secret for $name"
  caller_env "$short" "$name" "$app_id" "$SECRET" "$SECRET_KEY_ID"
  log "  $name: client secret $SECRET_KEY_ID added (expires in $SECRET_DAYS days)"
}

ensure_secret reader "${PREFIX}reader-job" "$READER_APP_ID" "$READER_OBJECT_ID"
READER_SECRET_KEY_ID="$SECRET_KEY_ID"
ensure_secret writer "${PREFIX}writer-job" "$WRITER_APP_ID" "$WRITER_OBJECT_ID"
WRITER_SECRET_KEY_ID="$SECRET_KEY_ID"
ensure_secret stranger "${PREFIX}stranger-job" "$STRANGER_APP_ID" "$STRANGER_OBJECT_ID"
STRANGER_SECRET_KEY_ID="$SECRET_KEY_ID"
unset SECRET

# cert-job: a self-signed RSA 2048 certificate (Entra checks the signature of the client assertion
# against the registered public key, not a chain). Entra keys a certificate credential by its
# SHA-1 thumbprint (customKeyIdentifier), which is also how it is found again here.
CERT_PEM="$OUT_DIR/cert-job.pem"
CERT_CRT="$OUT_DIR/cert-job.crt"
thumbprint_hex() { openssl x509 -in "$1" -noout -fingerprint -sha1 | sed 's/.*=//; s/://g' | tr '[:lower:]' '[:upper:]'; }
thumbprint_b64() { openssl x509 -in "$1" -outform DER | openssl dgst -sha1 -binary | openssl base64 -A; }
cert_registered() {
  local hex b64 registered
  hex="$(thumbprint_hex "$CERT_CRT")"
  b64="$(thumbprint_b64 "$CERT_CRT")"
  registered="$(az ad app show --id "$CERT_OBJECT_ID" --query "keyCredentials[].customKeyIdentifier" -o tsv)"
  grep -qixF -e "$hex" -e "$b64" <<<"$registered"
}
if [[ -f "$CERT_PEM" && -f "$CERT_CRT" ]] &&
  openssl x509 -in "$CERT_CRT" -noout -checkend $((MIN_DAYS * 86400)) >/dev/null &&
  cert_registered; then
  log "  ${PREFIX}cert-job: certificate $(thumbprint_hex "$CERT_CRT") kept ($(openssl x509 -in "$CERT_CRT" -noout -enddate))"
else
  openssl req -x509 -newkey rsa:2048 -sha256 -nodes -days "$CERT_DAYS" \
    -subj "/CN=${PREFIX}cert-job" -keyout "$WORK/cert-job.key" -out "$WORK/cert-job.crt" 2>/dev/null ||
    die "openssl could not create the certificate"
  # The public certificate only: --append keeps the app's other credentials.
  with_retry "uploading the certificate of ${PREFIX}cert-job" \
    az ad app credential reset --id "$CERT_OBJECT_ID" --cert "@$WORK/cert-job.crt" --append \
    --display-name "${PREFIX}mesh setup.sh" -o none || exit 1
  write_out cert-job.crt <"$WORK/cert-job.crt"
  cat "$WORK/cert-job.crt" "$WORK/cert-job.key" | write_out cert-job.pem
  log "  ${PREFIX}cert-job: certificate $(thumbprint_hex "$CERT_CRT") uploaded (valid $CERT_DAYS days)"
fi
CERT_THUMBPRINT="$(thumbprint_hex "$CERT_CRT")"

# ---- 4. app role assignments --------------------------------------------------------------------

log ""
log "App role assignments on ${API_NAME}"
existing_assignments="$(with_retry "listing the assignments of $API_NAME" \
  az rest --method GET --uri "$GRAPH/servicePrincipals/$API_SP_ID/appRoleAssignedTo?\$top=999" \
  --query "value[].[principalId, appRoleId]" -o tsv)" || exit 1

assign() { # CLIENT_SP ROLE_ID ROLE_NAME CLIENT_NAME
  local body
  if grep -qxF "$1"$'\t'"$2" <<<"$existing_assignments"; then
    log "  $4 -> $3: already assigned"
    return 0
  fi
  body="$(jq -n --arg p "$1" --arg r "$API_SP_ID" --arg a "$2" \
    '{principalId: $p, resourceId: $r, appRoleId: $a}')"
  # Listed above as absent, but it may have arrived since (another run, or a replica that lagged):
  # Graph then answers 400 "Permission being assigned already exists on the object", which is fine.
  local status=0
  TOLERATE='Permission being assigned already exists on the object'
  with_retry "assigning $3 to $4" \
    az rest --method POST --uri "$GRAPH/servicePrincipals/$API_SP_ID/appRoleAssignedTo" \
    --headers "Content-Type=application/json" --body "$body" -o none || status=$?
  TOLERATE=""
  case "$status" in
    0) log "  $4 -> $3: assigned" ;;
    3) log "  $4 -> $3: already assigned" ;;
    *) exit 1 ;;
  esac
}
assign "$READER_SP_ID" "$ROLE_READ_ID" "$ROLE_READ" "${PREFIX}reader-job"
assign "$WRITER_SP_ID" "$ROLE_WRITE_ID" "$ROLE_WRITE" "${PREFIX}writer-job"
assign "$CERT_SP_ID" "$ROLE_READ_ID" "$ROLE_READ" "${PREFIX}cert-job"
# The stranger holds the role too, so that its 403 can only come from the API's allow-list.
assign "$STRANGER_SP_ID" "$ROLE_READ_ID" "$ROLE_READ" "${PREFIX}stranger-job"

# ---- 5. the services' configuration -------------------------------------------------------------

log ""
log "Writing $OUT_DIR"
SCOPE="$API_ID_URI/.default"

write_out registrations.env <<EOF
$generated
# The objects it made, for reference; no secrets.
TENANT_ID=$TENANT_ID
AUTHORITY_HOST=$AUTHORITY_HOST
APP_PREFIX=$(env_value "$PREFIX")
API_APP_ID=$API_APP_ID
API_OBJECT_ID=$API_OBJECT_ID
API_SP_ID=$API_SP_ID
API_ID_URI=$API_ID_URI
ROLE_TASKS_READ_ALL_ID=$ROLE_READ_ID
ROLE_TASKS_READWRITE_ALL_ID=$ROLE_WRITE_ID
READER_APP_ID=$READER_APP_ID
READER_SP_ID=$READER_SP_ID
READER_SECRET_KEY_ID=$READER_SECRET_KEY_ID
WRITER_APP_ID=$WRITER_APP_ID
WRITER_SP_ID=$WRITER_SP_ID
WRITER_SECRET_KEY_ID=$WRITER_SECRET_KEY_ID
CERT_JOB_APP_ID=$CERT_APP_ID
CERT_JOB_SP_ID=$CERT_SP_ID
CERT_JOB_THUMBPRINT=$CERT_THUMBPRINT
STRANGER_APP_ID=$STRANGER_APP_ID
STRANGER_SP_ID=$STRANGER_SP_ID
STRANGER_SECRET_KEY_ID=$STRANGER_SECRET_KEY_ID
EOF

# Lists go in one variable, comma-separated (shared::config::list). The audiences hold the client ID
# (what v2 tokens carry) and the application ID URI (what a v1 token would carry).
write_out api.env <<EOF
$generated
# The tasks API: whose tokens it accepts (listen address and database path are the image's).
# No secrets.
API__ENTRA__AUTHORITY_HOST=$AUTHORITY_HOST
API__ENTRA__TENANTS=$TENANT_ID
API__AUTH__AUDIENCES=$API_APP_ID,$API_ID_URI
# reader-job, writer-job, cert-job. stranger-job ($STRANGER_APP_ID) is deliberately absent.
API__AUTH__ALLOWED_CLIENTS=$READER_APP_ID,$WRITER_APP_ID,$CERT_APP_ID
EOF

caller_env cert-job "${PREFIX}cert-job" "$CERT_APP_ID" "" ""

# Each caller's --config: its jobs, the same as deploy/emulator's but for the scope. The identity
# comes from the .env file; the scope is the API's application ID URI + "/.default", the only form
# the client credentials grant takes. (The image listens on 0.0.0.0:9090 by itself.) Every 5 s, as
# in the emulator's demo: calls go to the API, while tokens come from Entra only when they are
# refreshed, at about half of their 60-90 minute life.
caller_toml() { # NAME DESCRIPTION, then the jobs on stdin
  cat <<EOF
$generated
# ${PREFIX}$1: $2
# Its identity is in the .env file of the same name (AZURE_* variables); it gets its tokens from
# $AUTHORITY_HOST/$TENANT_ID/oauth2/v2.0/token
EOF
  cat
}
list_job="
[[jobs]]
name = \"list-tasks\"
interval_secs = 5
url = \"$API_BASE_URL/api/tasks?limit=10\"
scope = \"$SCOPE\"
timeout_secs = 10"

caller_toml reader-job "reads the tasks (Tasks.Read.All)." <<EOF | write_out reader.toml
$list_job

[[jobs]]
name = "whoami"
interval_secs = 5
url = "$API_BASE_URL/api/whoami"
scope = "$SCOPE"
timeout_secs = 10
EOF

caller_toml writer-job "creates a task every 5 seconds (Tasks.ReadWrite.All)." <<EOF | write_out writer.toml

[[jobs]]
name = "create-task"
interval_secs = 5
method = "POST"
url = "$API_BASE_URL/api/tasks"
scope = "$SCOPE"
body = { title = "created by writer-job through a real Entra ID token" }
success_status = [201]
timeout_secs = 10
EOF

caller_toml cert-job "reads the tasks (Tasks.Read.All), signing in with its certificate." <<EOF | write_out cert-job.toml
$list_job
EOF

caller_toml stranger-job "the reader's call, from an app the API does not allow." <<EOF | write_out stranger.toml
# Entra issues it a valid token that even holds $ROLE_READ, but its client ID is not in
# API__AUTH__ALLOWED_CLIENTS: every run ends in 403 client_not_allowed and counts as a failure.
$list_job
EOF

chmod 600 "$OUT_DIR"/*
log "  api.env reader.env writer.env stranger.env cert-job.env"
log "  reader.toml writer.toml stranger.toml cert-job.toml cert-job.pem cert-job.crt registrations.env"
log ""
log "Done. Scope for the callers: $SCOPE"
log "Run:  MESH_ENV=${OUT_DIR#"$PWD/"} docker compose -f docker-compose.yml -f docker-compose.entra.yml up"
log "The files are readable by $(id -un) only: the containers that mount them must run as $(id -u):$(id -g)."
log "New credentials and assignments can take a few minutes to reach every Entra replica: an"
log "AADSTS7000215 or a token without roles right after this run usually clears by itself."
