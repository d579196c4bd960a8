#!/usr/bin/env bash
# Kernel benchmarks: native vs Java update kernels on the same direct buffers, against an in-place
# triad measured in the same run, plus the cost of one call through the binding. Writes
# bench/results/kernels.json (raw JMH), kernels.md (tables and targets) and kernels.svg (chart).
#
#   bench/kernels.sh           short mode, under 5 minutes
#   bench/kernels.sh --full    full mode: longer iterations, two forks (about 25 minutes)
#   bench/kernels.sh -- ARGS   extra JMH arguments (e.g. -p size=65536)
set -euo pipefail
cd "$(dirname "$0")/.."

mode=short
if [ "${1:-}" = "--full" ]; then mode=full; shift; fi
if [ "${1:-}" = "--" ]; then shift; fi

command -v g++ >/dev/null && command -v cmake >/dev/null \
  || { echo "bench/kernels.sh needs g++ and cmake: it compares the native kernels with Java" >&2; exit 1; }

echo "[bench] building (native kernels, tests skipped)..." >&2
mvn -q -B -ntp test-compile dependency:build-classpath \
  -Dmdep.outputFile=target/bench-classpath.txt -Dmdep.includeScope=test >&2
cp="target/test-classes:target/classes:$(cat target/bench-classpath.txt)"
cache="-Dorg.bytedeco.javacpp.cachedir=$PWD/target/javacpp-cache"

if [ "$mode" = full ]; then
  jmh=(-wi 3 -w 1s -i 5 -r 1s -f 2)
  how='bench/kernels.sh --full'
else
  jmh=(-wi 2 -w 300ms -i 3 -r 300ms -f 1)
  how='bench/kernels.sh'
fi

out=bench/results
mkdir -p "$out"
java $cache -cp "$cp" org.openjdk.jmh.Main 'KernelBench|CallBench' "${jmh[@]}" \
  -jvmArgsPrepend "$cache" -rf json -rff "$out/kernels.json" "$@"

# (sed -n '1p' rather than head: head closing the pipe early would trip pipefail)
cpu=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | sed -n '1p' || true)
isa=$(java $cache -cp "$cp" org.pserver.cli.Main kernels 2>/dev/null | sed -n 's/^kernels: //p' || true)
jdk=$(java -version 2>&1 | sed -n '1p' || true)
header="Measured $(date -u +%Y-%m-%d) on ${cpu:-unknown CPU} ($(nproc) cores), ${jdk}, kernels ${isa}, ${mode} mode (\`${how}\`)."
java -cp "$cp" org.pserver.bench.KernelReport "$out/kernels.json" "$out" "$header"
cat "$out/kernels.md"
echo "[bench] wrote $out/kernels.md and $out/kernels.svg" >&2
