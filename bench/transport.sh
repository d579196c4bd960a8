#!/usr/bin/env bash
# Transport benchmark: on loopback, one client JVM (the trainers) and one server JVM, in one run
# with the variants alternating: raw TCP, a raw gRPC service that discards the same bytes, pserver
# SendGrads with Adam applied, pserver GetParams and a raw gRPC source of the same bytes (plus, at
# 1 MiB, both pserver calls through the stock protobuf marshallers), at 4 KiB, 1 MiB and 64 MiB per
# call with 1 and 4 trainers; server heap allocation and CPU per payload byte; p50/p99 of a 1 KiB
# SendGrad against a 1 KiB raw gRPC echo. Writes bench/results/transport.{json,md,svg}.
#
#   bench/transport.sh          short mode: 7 rounds of 0.5 s per variant (about 4 minutes with the build)
#   bench/transport.sh --full   full mode: 11 rounds of 1.5 s per variant (about 12 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."

. bench/common.sh
bench_servers bench/transport.sh "$@"

header="$(bench_machine), grpc-java 1.85.1 on Netty 4.2, ${mode} mode (\`${how}\`)."

mkdir -p bench/results
# Server JVM flags: a fixed heap (allocation is measured, not tuned away), room for the 64 MiB
# parameters' Adam state and for messages in flight off-heap.
java $cache --enable-native-access=ALL-UNNAMED -Xms2g -Xmx2g -cp "$cp" \
  org.pserver.bench.TransportBench "$mode" bench/results "$header" \
  $cache --enable-native-access=ALL-UNNAMED -Xms1g -Xmx1g -XX:MaxDirectMemorySize=3g -Dpserver.kernels=$kernels
echo "[bench] wrote bench/results/transport.md, transport.json and transport.svg" >&2
