#!/usr/bin/env bash
# Installs the real telemetry backends the backend tests talk to (tests/backends/):
#   - Prometheus (Debian package `prometheus`) scraping steer's metrics,
#   - headless Chromium (Debian package `chromium`) screenshotting Phoenix's UI,
#   - Arize Phoenix (PyPI `arize-phoenix`) in its own virtualenv, .venv-phoenix, because it is large and
#     must never become a runtime (or even a test-import) dependency of steer itself.
# Idempotent and quick when everything is already there: each step checks before it installs.
# `--phoenix-only` installs just .venv-phoenix (`make phoenix`).
# Needs root for apt (CI runs as root on Debian bookworm); without root the apt part is skipped with a
# message, and the tests that need it then skip locally (they fail under CI=true).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
PHOENIX_VENV="${PHOENIX_VENV:-.venv-phoenix}"
PHOENIX_SPEC="${PHOENIX_SPEC:-arize-phoenix==20.26.1}"  # pinned: the backend tests read its REST API and UI

phoenix_only=false
[ "${1:-}" = "--phoenix-only" ] && phoenix_only=true

need_apt=()
command -v prometheus >/dev/null 2>&1 || need_apt+=(prometheus)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
if ! $phoenix_only && ((${#need_apt[@]})); then
  if [ "$(id -u)" = 0 ]; then
    echo "install-backends: apt-get install ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # --no-install-recommends keeps chromium from pulling a desktop; prometheus' postinst may try to
    # start its service, which fails harmlessly in a container without systemd.
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" fonts-dejavu-core >/dev/null
  else
    echo "install-backends: not root, skipping apt packages: ${need_apt[*]}" >&2
  fi
fi
# The Debian package starts a system Prometheus on :9090 where an init system exists; the tests run
# their own on a free port, so a system one is only noise (and never needed).

if [ ! -x "$PHOENIX_VENV/bin/phoenix" ]; then
  echo "install-backends: creating $PHOENIX_VENV with $PHOENIX_SPEC"
  # uv installs Phoenix's ~200 packages in seconds (pip took ~9 minutes); it never downloads an interpreter.
  "$PYTHON" -m uv --version >/dev/null 2>&1 || "$PYTHON" -m pip install -q --disable-pip-version-check uv
  export UV_PYTHON_DOWNLOADS=never
  "$PYTHON" -m uv venv -q --python "$PYTHON" "$PHOENIX_VENV"
  "$PYTHON" -m uv pip install -q --compile-bytecode --python "$PHOENIX_VENV/bin/python" "$PHOENIX_SPEC"
  "$PHOENIX_VENV/bin/python" -c "import phoenix.server.main" || { echo "install-backends: arize-phoenix did not install" >&2; exit 1; }
fi
echo "install-backends: prometheus $(prometheus --version 2>&1 | head -1 | awk '{print $3}' || true)," \
     "chromium $(chromium --version 2>/dev/null | awk '{print $2}' || true)," \
     "phoenix $("$PHOENIX_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("arize-phoenix"))' 2>/dev/null || true)"
