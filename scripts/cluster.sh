#!/usr/bin/env bash
# A whole cluster on loopback, as separate processes: one etcd, N pservers (etcd mode) and M
# trainers (`pserver demo`). Runs for a given time, optionally SIGKILLs and restarts a pserver
# every K seconds, then stops everything gracefully and prints a summary: gradients applied per
# second (from the pservers' Prometheus metrics), pserver restarts survived, the trainers' final
# accuracy and the pservers' exit codes.
#
#   scripts/cluster.sh [--duration SECONDS] [--pservers N] [--trainers M] [--kill-every K] [--out DIR]
#
# Defaults: 60 s, 3 pservers, 4 trainers, no kills, a temp dir (kept: logs, checkpoints, etcd).
# Extra trainer flags go in TRAINER_ARGS, extra pserver flags in PSERVER_ARGS.
# Needs etcd (Debian: etcd-server) and target/pserver.jar (built by bin/pserver when missing), or
# PSERVER_CMD: the command that runs the pserver CLI (e.g. "java -cp CLASSPATH org.pserver.cli.Main").
# Exit status: 0 when every pserver restarted by the script came back, every trainer finished its
# run (exit 0, or 3: ran fine but stayed below the demo's accuracy bar) and every pserver exited 0
# on SIGTERM. Below the bar is reported, not counted as a failure: a short run with frequent kills
# trains little (each kill stalls every trainer until the pserver is back), so callers that need
# a bound on accuracy check the per-trainer accuracies in the summary themselves.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
duration=60 pservers=3 trainers=4 kill_every=0 out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration="$2"; shift 2 ;;
    --pservers) pservers="$2"; shift 2 ;;
    --trainers) trainers="$2"; shift 2 ;;
    --kill-every) kill_every="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "cluster.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
out="${out:-$(mktemp -d /tmp/pserver-cluster.XXXXXX)}"
mkdir -p "$out"
say() { printf '[cluster] %s\n' "$*" >&2; }

command -v etcd >/dev/null || { say "etcd not found (Debian: apt-get install etcd-server)"; exit 2; }
if [ -n "${PSERVER_CMD:-}" ]; then
  # e.g. the tests: "java -cp <their classpath> org.pserver.cli.Main" (no build from inside a build)
  read -r -a java_cmd <<<"$PSERVER_CMD"
else
  "$root/bin/pserver" --version >/dev/null   # builds target/pserver.jar when missing or stale
  java_cmd=(java --enable-native-access=ALL-UNNAMED -Xmx512m "-Dorg.bytedeco.javacpp.cachedir=$root/target/javacpp-cache" -jar "$root/target/pserver.jar")
fi

# Every process this script starts, by PID; the trap stops them whatever happens.
declare -a all_pids=()
cleanup() {
  for p in "${all_pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

next_port=$(( 20000 + RANDOM % 30000 ))
free_port() {   # free_port VAR: sets VAR to a port nothing listens on (no subshell: the counter must advance)
  while (exec 3<>"/dev/tcp/127.0.0.1/$next_port") 2>/dev/null; do next_port=$((next_port + 1)); done
  printf -v "$1" '%s' "$next_port"; next_port=$((next_port + 1))
}
wait_for() {    # wait_for FILE OFFSET TEXT SECONDS PID: TEXT in FILE after its first OFFSET bytes
  local i
  for ((i = 0; i < $4 * 10; i++)); do
    tail -c "+$(($2 + 1))" "$1" 2>/dev/null | grep -q "$3" && return 0
    kill -0 "$5" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
applied() {     # applied METRICS_PORT: the pserver's pserver_gradients_applied_total, 0 if unreachable
  local v
  v=$( (exec 3<>"/dev/tcp/127.0.0.1/$1" && printf 'GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3 && cat <&3) 2>/dev/null \
      | awk '$1 == "pserver_gradients_applied_total" { printf "%d", $2 }')
  echo "${v:-0}"
}

# --- etcd -------------------------------------------------------------------------------------
free_port etcd_port; free_port peer_port
etcd_url="http://127.0.0.1:$etcd_port"
etcd --name cluster --data-dir "$out/etcd" --logger=zap --listen-metrics-urls '' \
  --listen-client-urls "$etcd_url" --advertise-client-urls "$etcd_url" \
  --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
  --initial-cluster "cluster=http://127.0.0.1:$peer_port" >"$out/etcd.log" 2>&1 &
etcd_pid=$!; all_pids+=("$etcd_pid")
etcd_healthy() {
  (exec 3<>"/dev/tcp/127.0.0.1/$etcd_port" && printf 'GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3 && cat <&3) 2>/dev/null \
    | grep -q '"health":"true"'
}
for ((i = 0; i < 300; i++)); do etcd_healthy && break; kill -0 "$etcd_pid" 2>/dev/null || break; sleep 0.1; done
etcd_healthy || { say "etcd did not become healthy; see $out/etcd.log"; exit 1; }
say "etcd on $etcd_url"

# --- pservers -----------------------------------------------------------------------------------
declare -a ps_pid ps_port ps_metrics ps_applied_before
start_pserver() {   # start_pserver INDEX: (re)starts pserver INDEX on its ports and directory
  local i=$1 log="$out/pserver-$1.log" offset
  echo "--- start $(date +%T)" >>"$log"
  offset=$(wc -c <"$log")   # the log is appended to: only this start's lines count
  # shellcheck disable=SC2086
  "${java_cmd[@]}" serve --port "${ps_port[$i]}" --index "$i" --etcd-endpoint "$etcd_url" \
    --num-pservers "$pservers" --advertise-host 127.0.0.1 --checkpoint-path "$out/checkpoints-$i" --checkpoint-interval 5s \
    --metrics-port "${ps_metrics[$i]}" ${PSERVER_ARGS:-} >>"$log" 2>&1 &
  ps_pid[$i]=$!; all_pids+=("${ps_pid[$i]}")
  wait_for "$log" "$offset" "listening on" 120 "${ps_pid[$i]}" || { say "pserver $i did not start; see $log"; return 1; }
}
for ((i = 0; i < pservers; i++)); do
  free_port port; ps_port[$i]=$port; free_port port; ps_metrics[$i]=$port; ps_applied_before[$i]=0
  start_pserver "$i"
done
say "$pservers pservers up"

# --- trainers -----------------------------------------------------------------------------------
declare -a tr_pid
for ((t = 0; t < trainers; t++)); do
  # shellcheck disable=SC2086
  "${java_cmd[@]}" demo --etcd "$etcd_url" --pservers 0 --trainers 1 --duration "${duration}s" \
    --out "$out/trainer-$t" ${TRAINER_ARGS:-} >"$out/trainer-$t.log" 2>&1 &
  tr_pid[$t]=$!; all_pids+=("${tr_pid[$t]}")
done
say "$trainers trainers started; running for ${duration}s"

# --- run, with optional chaos --------------------------------------------------------------------
start=$(date +%s) restarts=0 failed_restarts=0 last_kill=$start
while (( $(date +%s) - start < duration )); do
  running=0
  for p in "${tr_pid[@]}"; do kill -0 "$p" 2>/dev/null && running=$((running + 1)); done
  (( running == 0 )) && { say "all trainers finished early"; break; }
  if (( kill_every > 0 && $(date +%s) - last_kill >= kill_every )); then
    victim=$(( RANDOM % pservers ))
    ps_applied_before[$victim]=$(( ps_applied_before[victim] + $(applied "${ps_metrics[$victim]}") ))
    say "SIGKILL pserver $victim (pid ${ps_pid[$victim]}), restarting it"
    kill -KILL "${ps_pid[$victim]}" 2>/dev/null || true   # it may be dead already: a failed restart
    wait "${ps_pid[$victim]}" 2>/dev/null || true
    last_kill=$(date +%s)   # a kill every K seconds, however long the restart takes
    if start_pserver "$victim"; then restarts=$((restarts + 1)); else failed_restarts=$((failed_restarts + 1)); fi
  fi
  sleep 1
done
elapsed=$(( $(date +%s) - start )); (( elapsed > 0 )) || elapsed=1

# --- stop: wait for the trainers, then pservers (final checkpoints), then etcd ------------------------
total=0
for ((i = 0; i < pservers; i++)); do total=$(( total + ps_applied_before[i] + $(applied "${ps_metrics[$i]}") )); done
trainer_failures=0 below_bar=0 trainer_exits=""
for p in "${tr_pid[@]}"; do   # each trainer stops by itself after --duration, then evaluates
  rc=0; wait "$p" 2>/dev/null || rc=$?
  trainer_exits="$trainer_exits $rc"
  case "$rc" in
    0) ;;
    3) below_bar=$((below_bar + 1)) ;;   # ran fine, accuracy below the demo's bar
    *) trainer_failures=$((trainer_failures + 1)) ;;
  esac
done
exits=""
for ((i = 0; i < pservers; i++)); do
  kill -TERM "${ps_pid[$i]}" 2>/dev/null || true
  rc=0; wait "${ps_pid[$i]}" 2>/dev/null || rc=$?
  exits="$exits $rc"
done
kill -TERM "$etcd_pid" 2>/dev/null || true; wait "$etcd_pid" 2>/dev/null || true

accuracy=""
for ((t = 0; t < trainers; t++)); do
  a=$(grep -oiE 'accuracy[ =:]+[0-9.]+' "$out/trainer-$t.log" | tail -1 | grep -oE '[0-9.]+$' || true)
  accuracy="$accuracy ${a:-?}"
done

cat <<SUMMARY
cluster summary ($out)
  processes:                  etcd, $pservers pservers, $trainers trainers, ${elapsed}s
  gradients applied:          $total ($(( total / elapsed ))/s)
  pserver restarts survived:  $restarts (failed: $failed_restarts)
  final accuracy per trainer:$accuracy
  trainer exit codes:        $trainer_exits
  trainer failures:           $trainer_failures (exit codes other than 0 and 3; see trainer-<t>.log)
  trainers below accuracy bar: $below_bar (exit code 3: finished, but a short run with frequent kills trains little)
  pserver exit codes:        $exits
SUMMARY
[ "$failed_restarts" = 0 ] && [ "$trainer_failures" = 0 ] && [ -z "$(echo "$exits" | tr -d ' 0')" ]
