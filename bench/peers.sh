#!/usr/bin/env bash
# steer against its peers, one command (make bench-peers): builds bench/.venv-peers from
# bench/peers/requirements.lock.txt (exact versions, --no-deps: see the comments in that file), installs
# this repository into it (editable, no deps: they are in the lock), then runs bench/peers/peers.py with
# every contender. Arguments are passed on to peers.py (e.g. --quick, --providers openai, --streams 200).
# Results: bench/results/peers-<timestamp>.{json,md} (git-ignored). Full run: ~15-20 min on 2 cores.
# `peers.sh --inprocess [args]` (make bench-tiebreak) runs bench/inprocess.py instead: steer and the peers
# that can be switched off again, taking turns in one process (bench/README.md); results in
# bench/results/inprocess-<timestamp>.{json,md}. Full run: ~10 min.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"  # no cd: a relative --out stays relative to the caller's directory
REPO="$(cd "$HERE/.." && pwd)"
PY="${PYTHON:-python3}"
VENV="$HERE/.venv-peers"
STAMP="$VENV/.installed"
if [ ! -f "$STAMP" ] || [ "$HERE/peers/requirements.lock.txt" -nt "$STAMP" ] || [ "$REPO/pyproject.toml" -nt "$STAMP" ]; then
  if command -v uv >/dev/null; then  # uv: the same pinned install, ~10x faster than pip
    [ -x "$VENV/bin/python" ] || uv venv -q --python "$PY" "$VENV"
    PIP=(env VIRTUAL_ENV="$VENV" uv pip install -q)
  else
    [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
    PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q install)
  fi
  "${PIP[@]}" --no-deps -r "$HERE/peers/requirements.lock.txt"
  "${PIP[@]}" --no-deps -e "$REPO"
  touch "$STAMP"
fi
if [ "${1:-}" = "--setup-only" ]; then exit 0; fi
if [ "${1:-}" = "--percall" ]; then  # make bench-percall
  shift
  exec "$VENV/bin/python" "$HERE/percall.py" "$@"
fi
if [ "${1:-}" = "--inprocess" ]; then
  shift
  OUT="$HERE/results/inprocess-$(date -u +%Y%m%d-%H%M%S)"
  mkdir -p "$HERE/results"
  "$VENV/bin/python" "$HERE/inprocess.py" --provider openai,anthropic --mode sync,async --capture off,on \
    --contenders bare,steer,otel-official,openinference --rounds 40 --processes 4 --out "$OUT.json" "$@" | tee "$OUT.md"
  exit "${PIPESTATUS[0]}"
fi
exec "$VENV/bin/python" "$HERE/peers/peers.py" \
  --contenders bare,steer,otel-official,openllmetry,openlit,openinference "$@"
