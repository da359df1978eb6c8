# Two set-up commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.steer-installed

.PHONY: demo test test-heavy bench bench-peers bench-tiebreak venv clean phoenix demo-phoenix

# (Re)create the virtualenv whenever the project's dependencies change.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[all,test]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/steer demo

test: $(STAMP)
	$(PY) -m pytest

test-heavy: $(STAMP)
	$(PY) -m pytest -m heavy

# steer vs the bare SDK (bench/README.md); BENCH_ARGS=--quick for a smoke run.
bench: $(STAMP)
	$(PY) bench/overhead.py $(BENCH_ARGS)

# steer vs the bare SDK and the peer libraries, in their own pinned venv (bench/.venv-peers).
bench-peers:
	bash bench/peers.sh $(BENCH_ARGS)

# steer and the peers that can be switched off again, taking turns in ONE process (same venv): the
# tie-breaker where the per-process tables above are within their noise (bench/README.md).
bench-tiebreak:
	bash bench/peers.sh --inprocess $(BENCH_ARGS)

# Arize Phoenix is large: it lives in its own virtualenv, never in steer's (see docs/recipes/phoenix.md).
PHOENIX_VENV := .venv-phoenix
$(PHOENIX_VENV)/bin/phoenix:
	$(PYTHON) -m venv $(PHOENIX_VENV)
	$(PHOENIX_VENV)/bin/python -m pip install -q --disable-pip-version-check 'arize-phoenix==20.26.1'

phoenix: $(PHOENIX_VENV)/bin/phoenix

demo-phoenix: $(STAMP) $(PHOENIX_VENV)/bin/phoenix
	$(VENV)/bin/steer demo --phoenix

clean:
	rm -rf $(VENV) .pytest_cache build src/*.egg-info
