#!/usr/bin/env bash
# The real az CLI (azure-cli, unmodified) against a freshly started emulator: `az cloud register`
# with the emulator as the cloud's active-directory endpoint, `az login --service-principal`
# (secret, tenant by GUID and by domain, certificate), `az account get-access-token` for Azure
# Resource Manager and the tasks API with claims and signatures checked, Entra's errors as az
# shows them, and each thing az needs shown to be needed (README, "The az CLI").
#
#   scripts/az-interop.sh
#
# Installs azure-cli (pinned below) into .venv/az on first use, or when another version is there
# (PyPI; about 700 MB, minutes). Nothing else leaves the machine: az runs in a config directory of
# its own under a temporary directory, never ~/.azure, and every host name it resolves must be
# loopback (scripts/az_interop.py). Output: `ok`/`FAIL` lines, then `az interop: N/M`; exit status
# 1 on any failure. Secrets and tokens are never printed; the emulator is stopped and the
# temporary directory removed however the script ends. Needs python3 with venv (scripts/lib/venv.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

AZ_CLI_VERSION=2.91.0
venv=.venv/az
. scripts/lib/venv.sh
python_venv az-interop "$venv" azure.cli.core "azure-cli==$AZ_CLI_VERSION"
installed=$("$venv/bin/python" -c 'from importlib.metadata import version; print(version("azure-cli"))')
if [ "$installed" != "$AZ_CLI_VERSION" ]; then
  echo "az-interop: azure-cli $installed in $venv; installing $AZ_CLI_VERSION"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "azure-cli==$AZ_CLI_VERSION"
fi

cargo build --quiet --locked -p entra-emulator
SCRIPT=az-interop
. scripts/lib/procs.sh

EMULATOR__DATA_DIR="$work/emulator" EMULATOR__SERVER__HTTPS_PORT=0 EMULATOR__LOG__FILTER=warn \
  "${CARGO_TARGET_DIR:-target}/debug/entra-emulator" serve --ready-file "$work/emulator.json" \
  2>"$work/emulator.log" &
pids+=($!)
wait_for "$work/emulator.json" "$!" entra-emulator "$work/emulator.log"

"$venv/bin/python" scripts/az_interop.py --az "$venv/bin/az" --pin "$AZ_CLI_VERSION" \
  --authority "$(json "$work/emulator.json" public_url)" \
  --ca-file "$(json "$work/emulator.json" ca_cert)" --work "$work/az"
