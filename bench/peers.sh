#!/usr/bin/env bash
# steer against its peers, one command (make bench-peers): builds bench/.venv-peers from
# bench/peers/requirements.lock.txt (exact versions, --no-deps: see the comments in that file), installs
# this repository into it (editable, no deps: they are in the lock), then runs bench/peers/peers.py with
# every contender. Arguments are passed on to peers.py (e.g. --quick, --providers openai, --streams 200).
# Results: bench/results/peers-<timestamp>.{json,md} (git-ignored). Full run: ~15-20 min on 2 cores.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"  # no cd: a relative --out stays relative to the caller's directory
REPO="$(cd "$HERE/.." && pwd)"
PY="${PYTHON:-python3}"
VENV="$HERE/.venv-peers"
STAMP="$VENV/.installed"
if [ ! -f "$STAMP" ] || [ "$HERE/peers/requirements.lock.txt" -nt "$STAMP" ] || [ "$REPO/pyproject.toml" -nt "$STAMP" ]; then
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
  "${PIP[@]}" install --upgrade pip
  "${PIP[@]}" install --no-deps -r "$HERE/peers/requirements.lock.txt"
  "${PIP[@]}" install --no-deps -e "$REPO"
  touch "$STAMP"
fi
exec "$VENV/bin/python" "$HERE/peers/peers.py" \
  --contenders bare,steer,otel-official,openllmetry,openlit,openinference "$@"
