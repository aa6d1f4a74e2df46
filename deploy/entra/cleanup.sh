#!/usr/bin/env bash
# Undoes deploy/entra/setup.sh: deletes the app registrations it created in the tenant az is signed
# in to, and removes deploy/entra/out/ (the secrets and the certificate key with it).
#
#   deploy/entra/cleanup.sh [--yes] [--purge]
#
#   --yes     do not ask before deleting
#   --purge   also delete them from the tenant's deleted items at once; otherwise Entra keeps them
#             restorable for 30 days, where they still count against the creator's quota of 250
#             directory objects (non-admin users)
#
# Only the five names setup.sh uses are touched: $MESH_APP_PREFIX + tasks-api, reader-job,
# writer-job, cert-job, stranger-job (default prefix "m2m-entra-"), nothing else that merely shares
# the prefix. Deleting an app registration deletes its service principal in this tenant, and with
# it the app role assignments, secrets and certificates. A name that is not there is skipped, so a
# half-finished setup can be cleaned up, and cleanup can run twice. In out/, only the files
# setup.sh writes are removed.
#
# Settings: MESH_APP_PREFIX, MESH_OUT_DIR, MESH_RETRY_ATTEMPTS, MESH_RETRY_DELAY_SECS, as for
# setup.sh.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly SCRIPT_DIR
readonly PREFIX="${MESH_APP_PREFIX-m2m-entra-}"
readonly OUT_DIR="${MESH_OUT_DIR:-$SCRIPT_DIR/out}"
readonly RETRY_ATTEMPTS="${MESH_RETRY_ATTEMPTS:-30}"
readonly RETRY_DELAY="${MESH_RETRY_DELAY_SECS:-10}"
readonly NAMES=(tasks-api reader-job writer-job cert-job stranger-job)

log() { printf '%s\n' "$*" >&2; }
die() { log "cleanup.sh: $*"; exit 1; }

yes=0
purge=0
for arg in "$@"; do
  case "$arg" in
    --yes | -y) yes=1 ;;
    --purge) purge=1 ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    *) die "unknown argument '$arg' (expected --yes, --purge)" ;;
  esac
done

command -v az >/dev/null 2>&1 || die "az is required but not on PATH"
[[ "$PREFIX" =~ ^[A-Za-z0-9._\ -]*$ ]] ||
  die "MESH_APP_PREFIX may hold only letters, digits, space, '.', '_' and '-'"
[[ "$RETRY_ATTEMPTS" =~ ^[0-9]+$ ]] || die "MESH_RETRY_ATTEMPTS must be a whole number, not '$RETRY_ATTEMPTS'"
[[ "$RETRY_DELAY" =~ ^[0-9]+$ ]] || die "MESH_RETRY_DELAY_SECS must be a whole number, not '$RETRY_DELAY'"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

account="$(az account show --query "[tenantId, user.name]" -o tsv 2>"$WORK/stderr")" ||
  die "az is not logged in ($(head -n 1 "$WORK/stderr")). Run: az login --tenant <tenant> --allow-no-subscriptions"
{ read -r TENANT_ID; read -r SIGNED_IN_AS; } <<<"$account" || true
GRAPH="$(az cloud show --query endpoints.microsoftGraphResourceId -o tsv)"
GRAPH="${GRAPH%/}/v1.0"
log "Tenant:       $TENANT_ID"
log "Signed in as: ${SIGNED_IN_AS:-unknown}"

# setup.sh records the tenant it wrote out/ for; refuse to pair that out/ with another tenant.
if [[ -f "$OUT_DIR/registrations.env" ]]; then
  written_for="$(sed -n 's/^TENANT_ID=//p' "$OUT_DIR/registrations.env" | tail -n 1)"
  [[ -z "$written_for" || "$written_for" == "$TENANT_ID" ]] ||
    die "$OUT_DIR was written for tenant $written_for, but az is signed in to $TENANT_ID: sign in to that tenant (az login --tenant $written_for) or set MESH_OUT_DIR"
fi

# id, appId and display name of each app to delete.
targets=()
for name in "${NAMES[@]}"; do
  rows="$(az ad app list --filter "displayName eq '${PREFIX}${name}'" --query "[].[id, appId, displayName]" -o tsv)"
  while IFS=$'\t' read -r object_id app_id display; do
    [[ -n "$object_id" ]] && targets+=("$object_id"$'\t'"$app_id"$'\t'"$display")
  done <<<"$rows"
done

if ((${#targets[@]} == 0)); then
  log "No app registrations named ${PREFIX}{$(
    IFS=,
    printf '%s' "${NAMES[*]}"
  )} in this tenant."
else
  log ""
  log "To delete (with their service principals, role assignments and credentials):"
  for t in "${targets[@]}"; do
    IFS=$'\t' read -r object_id app_id display <<<"$t"
    log "  $display  appId $app_id"
  done
fi
[[ -d "$OUT_DIR" ]] && log "and the directory $OUT_DIR (secrets, certificate key)."
if ((${#targets[@]} == 0)) && [[ ! -d "$OUT_DIR" ]]; then
  log "Nothing to do."
  exit 0
fi

if ((!yes)); then
  [[ -t 0 ]] || die "not asking without a terminal: run with --yes to delete"
  read -r -p "Delete them? [y/N] " answer
  [[ "$answer" =~ ^[Yy]([Ee][Ss])?$ ]] || die "nothing deleted"
fi

# A purge right after the delete can miss the item while the deletion replicates.
purge_item() {
  local attempt=1
  while :; do
    if az rest --method DELETE --uri "$GRAPH/directory/deletedItems/$1" -o none 2>"$WORK/stderr"; then
      return 0
    fi
    if ((attempt >= RETRY_ATTEMPTS)) || ! grep -qiE 'Request_ResourceNotFound|does not exist' "$WORK/stderr"; then
      log "cleanup.sh: purging $2 failed:"
      sed 's/^/    /' "$WORK/stderr" >&2
      return 1
    fi
    attempt=$((attempt + 1))
    sleep "$RETRY_DELAY"
  done
}

failed=0
for t in "${targets[@]}"; do
  IFS=$'\t' read -r object_id app_id display <<<"$t"
  if az ad app delete --id "$object_id" 2>"$WORK/stderr"; then
    log "  deleted $display"
  else
    log "cleanup.sh: deleting $display failed:"
    sed 's/^/    /' "$WORK/stderr" >&2
    failed=1
    continue
  fi
  if ((purge)); then
    if purge_item "$object_id" "$display"; then
      log "  purged $display from deleted items"
    else
      failed=1
    fi
  fi
done

if ((failed)); then
  die "some registrations were not deleted; $OUT_DIR is kept so that you can retry"
fi
# Only the files setup.sh writes (and its interrupted temporary files) are removed, so a mistaken
# MESH_OUT_DIR cannot take anything else with it.
if [[ -d "$OUT_DIR" ]]; then
  for f in api.env reader.env writer.env stranger.env cert-job.env reader.toml writer.toml \
    stranger.toml cert-job.toml cert-job.pem cert-job.crt registrations.env; do
    rm -f -- "${OUT_DIR:?}/$f"
  done
  find "$OUT_DIR" -maxdepth 1 -type f -name '.*.??????' -delete
  if rmdir -- "$OUT_DIR" 2>/dev/null; then
    log "  removed $OUT_DIR"
  else
    log "  removed setup.sh's files from $OUT_DIR; other files there were left alone"
  fi
fi
log "Done."
