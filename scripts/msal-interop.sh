#!/usr/bin/env bash
# Runs MSAL for Python (unmodified, instance discovery on) against a freshly started emulator:
# client secret, certificate (SHA-1 and SHA-256 thumbprint forms), claims and signature checked.
# Needs python3 with venv; installs msal into .venv/msal on first use (PyPI), and, run as root on
# Debian, python3-venv with apt-get when python3 cannot make a venv (Debian ships ensurepip there).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv/msal
. scripts/lib/venv.sh
python_venv msal-interop "$venv" msal 'msal>=1.35,<2'

cargo build --quiet --locked -p entra-emulator
work=$(mktemp -d)
cleanup() {
  [ -n "${emulator_pid:-}" ] && kill "$emulator_pid" 2>/dev/null && wait "$emulator_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

EMULATOR__DATA_DIR="$work/data" EMULATOR__SERVER__HTTPS_PORT=0 RUST_LOG=warn \
  ./target/debug/entra-emulator serve --ready-file "$work/ready.json" &
emulator_pid=$!
for _ in $(seq 1 100); do [ -s "$work/ready.json" ] && break; sleep 0.1; done
[ -s "$work/ready.json" ] || { echo "msal-interop: the emulator did not start" >&2; exit 1; }
authority=$("$venv/bin/python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["public_url"])' "$work/ready.json")

MSAL_INTEROP_CLIENT_SECRET='wrt8Q~demo.writer.secret.not-for-production' \
  "$venv/bin/python" scripts/msal_interop.py \
  --authority-host "$authority" \
  --ca-file "$work/data/ca.pem" \
  --cert-file entra-emulator/demo/certs/cert-job.crt \
  --key-file entra-emulator/demo/certs/cert-job.key
