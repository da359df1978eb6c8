#!/usr/bin/env bash
# Builds the real telemetry backends of tests/backends/ from source, through the Go module proxy (no
# binary downloads), pinned, and caches them OUTSIDE the clone so a second run takes seconds:
#   - otelcol-steer: an OpenTelemetry Collector with exactly the components of collector-config/
#     (collector-config/builder.yaml, built by the Collector Builder of the same release);
#   - jaeger:        Jaeger v2 (module github.com/jaegertracing/jaeger, program cmd/jaeger);
#   - prometheus:    Prometheus 3 (module github.com/prometheus/prometheus, programs cmd/prometheus and
#                    cmd/promtool).
# Each lands in $CACHE/<name>-<version>/ and is linked from $CACHE/bin/<name>, where the tests look
# (tests/backends/backend_support.py). Usage: .ci/build-backends.sh [otelcol|jaeger|prometheus ...]
# A piece that fails to build is reported and the others are still built; the exit code is then 1.
set -uo pipefail
cd "$(dirname "$0")/.."

CACHE="${STEER_BACKENDS_CACHE:-$HOME/.cache/steer-backends}"
BUILDER_VERSION=v0.161.0          # the release of collector-config/builder.yaml's modules
JAEGER_VERSION=v1.75.0            # the module version whose cmd/jaeger is Jaeger v2
PROMETHEUS_VERSION=v0.316.0       # the module version of Prometheus 3
export GOTOOLCHAIN=local          # build with the Go that is installed, or fail saying so
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
mkdir -p "$CACHE/bin"

command -v go >/dev/null || { echo "build-backends: no Go toolchain on PATH (need Go >= 1.26)" >&2; exit 1; }

timed() {  # timed NAME CMD...: runs CMD, prints how long it took
  local start=$SECONDS
  "${@:2}"
  local rc=$?
  echo "build-backends: $1 built in $((SECONDS - start)) s (rc=$rc)"
  return $rc
}

link() { ln -sfn "$2" "$CACHE/bin/$1"; echo "build-backends: $1 -> $2"; }

build_otelcol() {
  # The manifest's hash is part of the directory name: a changed component list is a new build.
  local hash dir
  hash=$(grep -v "^ *#" collector-config/builder.yaml | sha256sum | cut -c1-12)
  dir="$CACHE/otelcol-steer-$BUILDER_VERSION-$hash"
  if [ ! -x "$dir/otelcol-steer" ]; then
    GOBIN="$CACHE/builder-$BUILDER_VERSION" go install "go.opentelemetry.io/collector/cmd/builder@$BUILDER_VERSION" || return 1
    rm -rf "$dir.tmp"
    timed otelcol "$CACHE/builder-$BUILDER_VERSION/builder" --config collector-config/builder.yaml --output-path "$dir.tmp" || return 1
    rm -rf "$dir" && mv "$dir.tmp" "$dir"
  fi
  link otelcol-steer "$dir/otelcol-steer"
}

build_jaeger() {
  # Jaeger's go.mod has a replace directive, so `go install module/cmd/jaeger@version` refuses it:
  # download the module from the proxy and build inside it (the module cache is read-only; go build
  # writes only its build cache and -o).
  local dir="$CACHE/jaeger-$JAEGER_VERSION" src
  if [ ! -x "$dir/jaeger" ]; then
    src=$(go mod download -json "github.com/jaegertracing/jaeger@$JAEGER_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
    [ -n "$src" ] || return 1
    mkdir -p "$dir"
    timed jaeger bash -c "cd '$src' && go build -trimpath -ldflags='-s -w' -o '$dir/jaeger.tmp' ./cmd/jaeger" || return 1
    mv "$dir/jaeger.tmp" "$dir/jaeger"
  fi
  link jaeger "$dir/jaeger"
}

build_prometheus() {  # and its promtool, which checks collector-config/prometheus.yml
  # remove_all_sd: Prometheus' own build tag leaving out every service discovery (cloud SDKs, Kubernetes;
  # more than half of the build); the tests and collector-config/prometheus.yml use static targets only.
  local dir="$CACHE/prometheus-$PROMETHEUS_VERSION" program
  for program in prometheus promtool; do
    if [ ! -x "$dir/$program" ]; then
      mkdir -p "$dir"
      timed "$program" env GOBIN="$dir" go install -trimpath -ldflags='-s -w' -tags remove_all_sd \
        "github.com/prometheus/prometheus/cmd/$program@$PROMETHEUS_VERSION" || return 1
    fi
    link "$program" "$dir/$program"
  done
}

status=0
for piece in "${@:-otelcol jaeger prometheus}"; do
  for name in $piece; do
    "build_$name" || { echo "build-backends: $name FAILED to build (see above)" >&2; status=1; }
  done
done
exit $status
