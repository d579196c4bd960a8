#!/usr/bin/env bash
# Where a two-thread split of one update starts to pay: native kernels on one thread vs
# ParallelKernels (always split, and with its default threshold), 64 K to 64 M float32 elements,
# variants alternating within each round. Writes bench/results/parallel.{json,md}.
#
#   bench/parallel.sh          short mode: 5 rounds of 150 ms (about 1 minute after the build)
#   bench/parallel.sh --full   11 rounds of 400 ms (about 5 minutes)
#   bench/parallel.sh -- N...  only these sizes (elements)
set -euo pipefail
cd "$(dirname "$0")/.."

mode=short
if [ "${1:-}" = "--full" ]; then mode=full; shift; fi
if [ "${1:-}" = "--" ]; then shift; fi

. bench/common.sh
[ ${#native_flags[@]} -eq 0 ] \
  || { echo "bench/parallel.sh needs g++ and cmake: it measures the native kernels" >&2; exit 1; }
bench_build

if [ "$mode" = full ]; then rounds=11; ms=400; how='bench/parallel.sh --full'
else rounds=5; ms=150; how='bench/parallel.sh'; fi

header="$(bench_machine), ${mode} mode (\`${how}\`): ${rounds} rounds of ${ms} ms per variant."
mkdir -p bench/results
java $cache -Xms512m -Xmx512m -XX:MaxDirectMemorySize=3g --enable-native-access=ALL-UNNAMED -cp "$cp" \
  org.pserver.bench.ParallelCrossover bench/results "$header" "$rounds" "$ms" "$@"
echo "[bench] wrote bench/results/parallel.md" >&2
