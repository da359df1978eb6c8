# Two set-up commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.steer-installed
# uv builds a virtualenv in seconds where pip takes minutes; it is installed into $(PYTHON) if missing.
# It never downloads an interpreter: the venvs use $(PYTHON).
UV     := UV_PYTHON_DOWNLOADS=never $(PYTHON) -m uv
# pytest's workers: one per core (pytest-xdist); tests sharing an expensive module fixture are kept on
# one worker with @pytest.mark.xdist_group (--dist loadgroup).
XDIST  ?= -n auto --dist loadgroup
# Bytecode is cached (some shells set PYTHONDONTWRITEBYTECODE): without it every test process, and every
# CLI/devserver subprocess a test starts, compiles the SDKs and re-rewrites the test modules' asserts.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: demo test test-backends test-heavy bench bench-peers bench-tiebreak bench-percall venv uv clean phoenix demo-phoenix backends

uv:
	@$(PYTHON) -m uv --version >/dev/null 2>&1 || $(PYTHON) -m pip install -q --disable-pip-version-check uv

# (Re)create the virtualenv whenever the project's dependencies change.
$(STAMP): pyproject.toml | uv
	test -x $(PY) || $(UV) venv -q --python $(PYTHON) $(VENV)
	$(UV) pip install -q --compile-bytecode --python $(PY) -e '.[all,test]'
	$(UV) pip install -q --compile-bytecode --python $(PY) --no-deps openlit==1.45.0  # declares openai<3; tests/test_coexistence.py
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/steer demo

# The fast loop: everything but the heavy runs and the tests that need an external backend.
# (pytest's exit code 5, "no tests ran", fails it like any failure.)
test: $(STAMP)
	$(PY) -m pytest $(XDIST)

# Tests against real backends (Phoenix, Prometheus, Chromium, ...; .ci/install-backends.sh installs them).
# By file: each backend fixture (the real pipeline, Phoenix, Prometheus) serves one test file, so each
# starts once. (--dist loadgroup no longer groups under pytest 9.2: pytest-xdist issue 1386.)
BACKEND_XDIST ?= -n auto --dist loadfile
test-backends: $(STAMP)
	$(PY) -m pytest $(BACKEND_XDIST) -m backend

# Full-size load and fuzz runs.
test-heavy: $(STAMP)
	$(PY) -m pytest $(XDIST) -m heavy

# steer vs the bare SDK (bench/README.md); BENCH_ARGS=--quick for a smoke run.
bench: $(STAMP)
	$(PY) bench/overhead.py $(BENCH_ARGS)

# steer vs the bare SDK and the peer libraries, in their own pinned venv (bench/.venv-peers).
bench-peers:
	bash bench/peers.sh $(BENCH_ARGS)

# What one call costs (instructions, timed medians) and the wait after the last chunk, steer vs bare and the
# peers, 0 (non-streaming) to 200-chunk calls (bench/README.md "Per call"); in bench/.venv-peers.
bench-percall:
	bash bench/peers.sh --percall $(BENCH_ARGS)

# steer and the peers that can be switched off again, taking turns in ONE process (same venv): the
# tie-breaker where the per-process tables above are within their noise (bench/README.md).
bench-tiebreak:
	bash bench/peers.sh --inprocess $(BENCH_ARGS)

# Arize Phoenix is large: it lives in its own virtualenv, never in steer's (see docs/recipes/phoenix.md).
PHOENIX_VENV := .venv-phoenix
$(PHOENIX_VENV)/bin/phoenix: | uv
	PHOENIX_VENV=$(PHOENIX_VENV) PYTHON=$(PYTHON) bash .ci/install-backends.sh --phoenix-only

phoenix: $(PHOENIX_VENV)/bin/phoenix

demo-phoenix: $(STAMP) $(PHOENIX_VENV)/bin/phoenix
	$(VENV)/bin/steer demo --phoenix

# The real telemetry backends of tests/backends, built from source through the Go module proxy and
# cached in STEER_BACKENDS_CACHE (default ~/.cache/steer-backends): the OpenTelemetry Collector of
# collector-config/builder.yaml, Jaeger v2, Prometheus 3 (.ci/build-backends.sh; seconds when cached).
backends:
	bash .ci/build-backends.sh

clean:
	rm -rf $(VENV) .pytest_cache build src/*.egg-info
