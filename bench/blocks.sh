#!/usr/bin/env bash
# Block scaling benchmark (issue 7): one float32 parameter of 256 MiB with Adam, pushed (sendGrads
# of the whole gradient) and pulled (getParams) through PServerClient, which splits it into 1 MiB
# blocks over all pservers; cluster A has 1 pserver, cluster B 2, both running at the same time as
# separate JVMs on 127.0.0.1, measured side by side in alternating rounds from one client JVM.
# Target: push throughput on 2 pservers >= 1.6x that on 1. Writes bench/results/blocks.{json,md}.
#
#   bench/blocks.sh          short mode: 7 rounds of 3 calls per variant (about 2 minutes with the build)
#   bench/blocks.sh --full   full mode: 11 rounds of 5 calls per variant (about 5 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."

. bench/common.sh
bench_servers bench/blocks.sh "$@"

header="$(bench_machine), ${mode} mode (\`${how}\`)."

mkdir -p bench/results
# Client JVM: heap for the pulled parameters (each pull of a split parameter is assembled into one
# 256 MiB heap buffer), direct memory for the 256 MiB gradient and Netty's send buffers.
# Server JVMs (the trailing flags): direct memory for the parameter and its Adam state (3 x 256 MiB
# on the single pserver of cluster A) plus a whole 256 MiB request and its receive buffers.
java $cache --enable-native-access=ALL-UNNAMED -Xms4g -Xmx4g -XX:MaxDirectMemorySize=2g -cp "$cp" \
  org.pserver.bench.BlockScalingBench "$mode" bench/results "$header" \
  $cache --enable-native-access=ALL-UNNAMED -Xms1g -Xmx1g -XX:MaxDirectMemorySize=3g -Dpserver.kernels=$kernels
echo "[bench] wrote bench/results/blocks.md and blocks.json" >&2
