# Sourced by the Python interop scripts. `python_venv NAME VENV IMPORT PACKAGE...` makes VENV (under
# .venv/) with PACKAGE... from PyPI on first use, i.e. when `import IMPORT` fails there; as root on
# Debian it first installs python3-venv with apt-get when python3 cannot make a venv (Debian ships
# ensurepip there). NAME prefixes the messages.
python_venv() {
  local name=$1 venv=$2 module=$3
  shift 3
  if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import $module" 2>/dev/null; then
    return 0
  fi
  if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "$name: installing python3-venv (apt-get)"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    fi
    python3 -c 'import ensurepip, venv' 2>/dev/null ||
      { echo "$name: python3 cannot make a venv: install python3-venv (Debian, Ubuntu)" >&2; exit 1; }
  fi
  echo "$name: installing $* into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "$@"
}
