# Sourced by the bench scripts: builds the test classpath (benchmarks live in a test source root)
# and sets $cp (the classpath), $cache (JavaCPP's cache folder flag) and $native_flags (empty, or
# the flags that skip the native build when g++ or cmake is missing).

native_flags=()
if ! command -v g++ >/dev/null 2>&1 || ! command -v cmake >/dev/null 2>&1; then
  native_flags=(-Dnative.skip=true -Djavacpp.skip=true)
fi

bench_build() {
  echo "[bench] building (tests skipped)..." >&2
  mvn -q -B -ntp test-compile dependency:build-classpath ${native_flags[@]+"${native_flags[@]}"} \
    -Dmdep.outputFile=target/bench-classpath.txt -Dmdep.includeScope=test >&2
  cp="target/test-classes:target/classes:$(cat target/bench-classpath.txt)"
  cache="-Dorg.bytedeco.javacpp.cachedir=$PWD/target/javacpp-cache"
}

# "Measured <date> on <cpu> (<n> cores), <jdk>" for report headers.
bench_machine() {
  local cpu jdk
  # (sed -n '1p' rather than head: head closing the pipe early would trip pipefail)
  cpu=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | sed -n '1p' || true)
  jdk=$(java -version 2>&1 | sed -n '1p' || true)
  echo "Measured $(date -u +%Y-%m-%d) on ${cpu:-unknown CPU} ($(nproc) cores), ${jdk}"
}

# For the benchmarks that run pserver processes: "bench_servers SCRIPT [--full]" sets $mode (short,
# or full), $how (the command, for report headers) and $kernels (native, or java when the native
# kernels cannot be built here, said once), then builds.
bench_servers() {
  local script="$1"; shift
  mode=short how="$script"
  if [ "${1:-}" = "--full" ]; then mode=full how="$script --full"; fi
  kernels=native
  if [ ${#native_flags[@]} -gt 0 ]; then
    echo "[bench] no g++ or cmake on PATH: building without the native kernels (the pservers use Java kernels)" >&2
    kernels=java
  fi
  bench_build
}
