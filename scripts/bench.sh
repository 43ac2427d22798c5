#!/usr/bin/env bash
# The benchmark, in one command: Redis baselines (redis-benchmark), the service with its full
# middleware stack, the service with every optional layer off, and a bare tonic server answering
# from memory, all on this machine in the same run, then a table of medians and ratios.
# Machines are shared and noisy: only the ratios and medians of interleaved rounds mean much.
#
#   scripts/bench.sh                 # about 12 minutes
#   BENCH_ROUNDS=5 BENCH_DURATION=10s BENCH_BIG=0 scripts/bench.sh
#
# Settings: BENCH_ROUNDS (3), BENCH_DURATION (5s per run), BENCH_CLIENTS (50),
# BENCH_CONNECTIONS (10), BENCH_BIG (1: also measure with 1,000,000 stored tasks),
# BENCH_WATCHES (10000 open watches).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${BENCH_ROUNDS:-3}
DURATION=${BENCH_DURATION:-5s}
CLIENTS=${BENCH_CLIENTS:-50}
CONNECTIONS=${BENCH_CONNECTIONS:-10}
BIG=${BENCH_BIG:-1}

. scripts/bench-common.sh

start_processor

# start_service NAME EXTRA_ENV...: the service on a port of its own; prints its port, records its
# pid. (Its output goes to a file: a command substitution waits for every holder of its stdout.)
start_service() {
  local name=$1; shift
  local port; port=$(free_port)
  env -i PATH="$PATH" RUST_LOG=warn TASK_GRPC_HOST=127.0.0.1 TASK_GRPC_PORT="$port" TASK_METRICS_PORT=0 \
    REDIS_HOST=127.0.0.1 REDIS_PORT="$redis_port" PROCESSOR_GRPC_ADDR="127.0.0.1:$processor_port" \
    TASK_REDIS_KEY_PREFIX="bench-$name" LOCAL_STORAGE_PATH="$work/videos" "$@" \
    "$bin/task-service" >"$work/$name.log" 2>&1 &
  echo "$!" > "$work/$name.pid"
  wait_port "$port"
  echo "$port"
}

# The limiter stays in the stack but never binds: one benchmark client is one peer address.
full_metrics=$(free_port)
full_port=$(start_service full TASK_RATE_LIMIT_PER_CLIENT=100000000 TASK_METRICS_PORT="$full_metrics")
# CreateTask answered once a replica holds the task (WAIT 1): the durability knob's cost.
durable_port=$(start_service durable TASK_RATE_LIMIT_PER_CLIENT=100000000 TASK_REDIS_MIN_REPLICAS_ACKED=1)
# Two for 10,000 watches from one client: woken by Redis's notifications, and by polling alone.
many_watches="TASK_WATCH_MAX_PER_CLIENT=20000 TASK_WATCH_MAX_TOTAL=20000"
# shellcheck disable=SC2086
watch_port=$(start_service watch $many_watches)
# shellcheck disable=SC2086
watch_poll_port=$(start_service watch-poll $many_watches TASK_WATCH_NOTIFICATIONS=off)
# The same with the GetTaskStatus read cache on (RESP3 CLIENT TRACKING; off by default).
cached_metrics=$(free_port)
cached_port=$(start_service cached TASK_RATE_LIMIT_PER_CLIENT=100000000 TASK_READ_CACHE_ENTRIES=10000 \
  TASK_METRICS_PORT="$cached_metrics")
minimal_metrics=$(free_port)
minimal_port=$(start_service minimal TASK_RATE_LIMIT_PER_CLIENT=0 TASK_MAX_IN_FLIGHT=0 TASK_REQUEST_TRACING=off \
  TASK_METRICS_PORT="$minimal_metrics")
ceiling_port=$(free_port)
"$bin/task-bench" ceiling --listen "127.0.0.1:$ceiling_port" >"$work/ceiling.log" 2>&1 &
echo $! > "$work/ceiling.pid"
wait_port "$ceiling_port"

load() { "$bin/task-bench" run --json --clients "$CLIENTS" --connections "$CONNECTIONS" --duration "$DURATION" "$@"; }
redis_rps() {
  redis-benchmark -p "$redis_port" -c 50 -n "${1}" -q --csv "${@:2}" | tail -n 1 | cut -d'"' -f4
}

# h2load, a C HTTP/2 load generator that takes far less CPU than task-bench, as a second,
# independent view: 10 connections x 5 streams, the same rounds.
. scripts/h2load-common.sh
h2_task=$("$bin/taskctl" --addr "127.0.0.1:$full_port" create bench/original.mp4 | sed -n 's/^task_id: //p')
grpc_body "$work/get.bin" "$h2_task"
grpc_body "$work/create.bin" bench/original.mp4
# h2 LABEL PORT METHOD BODY [METRICS_PORT]: one h2load run, as a JSON line (p99 from its log).
h2() {
  local label=$1 port=$2 method=$3 body=$4 metrics=${5:-}
  local before=0; [ -n "$metrics" ] && before=$(ok_count "$metrics" "$method")
  h2load_run "$port" "$method" "$body" "${DURATION%s}" "$work/h2.out" "$work/h2.log"
  local after=-1; [ -n "$metrics" ] && after=$(ok_count "$metrics" "$method")
  # shellcheck disable=SC2046
  python3 - "$label" $(h2load_figures "$work/h2.out" "$work/h2.log") "$before" "$after" <<'PY' >> "$work/results.jsonl"
import json, sys
label, rps, done, p99, before, after = sys.argv[1], float(sys.argv[2]), *map(int, sys.argv[3:7])
print(json.dumps({"label": label, "requests_per_sec": rps, "done": done,
                  "ok": None if after < 0 else after - before, "latency": {"p99_us": p99}}))
PY
}

redis-cli -p "$redis_port" HSET task:bench task_id 5bd6e4a5-8ea7-4b36-a1a0-9b6e1c2b9e0a status COMPLETED \
  original_file_key bench/original.mp4 result_file_key ./data/videos/x/result.mp4 error_message '' \
  created_at 2025-10-30T10:00:00Z updated_at 2025-10-30T10:00:00Z >/dev/null

# The polling mix: clients read 3,000 live (PROCESSING) tasks at random while a Processor writes
# 1,000 progress updates per second to them, without and with the read cache.
LIVE_TASKS=3000 PROGRESS_WRITES=1000
"$bin/task-bench" seed --live --count "$LIVE_TASKS" --redis-port "$redis_port" >/dev/null
polling() { load --scenario get --seeded "$LIVE_TASKS" --churn "$PROGRESS_WRITES" --redis-port "$redis_port" "$@"; }

echo "== $ROUNDS interleaved rounds of $DURATION, $CLIENTS clients over $CONNECTIONS connections" >&2
for round in $(seq 1 "$ROUNDS"); do
  echo "   round $round" >&2
  echo "{\"label\":\"redis-hgetall\",\"requests_per_sec\":$(redis_rps 200000 HGETALL task:bench)}" >> "$work/results.jsonl"
  echo "{\"label\":\"redis-hset\",\"requests_per_sec\":$(redis_rps 200000 HSET task:bench task_id x status PENDING original_file_key a result_file_key '' error_message '' created_at t updated_at t)}" >> "$work/results.jsonl"
  load --addr "http://127.0.0.1:$full_port" --scenario get --label get-full >> "$work/results.jsonl"
  load --addr "http://127.0.0.1:$minimal_port" --scenario get --label get-minimal >> "$work/results.jsonl"
  load --addr "http://127.0.0.1:$ceiling_port" --scenario get --label get-ceiling >> "$work/results.jsonl"
  h2 h2-get-full "$full_port" GetTaskStatus "$work/get.bin" "$full_metrics"
  h2 h2-get-minimal "$minimal_port" GetTaskStatus "$work/get.bin" "$minimal_metrics"
  h2 h2-get-ceiling "$ceiling_port" GetTaskStatus "$work/get.bin"
  h2 h2-get-cached "$cached_port" GetTaskStatus "$work/get.bin" "$cached_metrics"
  load --addr "http://127.0.0.1:$cached_port" --scenario get --label get-cached >> "$work/results.jsonl"
  polling --addr "http://127.0.0.1:$full_port" --label polling-full >> "$work/results.jsonl"
  polling --addr "http://127.0.0.1:$cached_port" --label polling-cached >> "$work/results.jsonl"
done
read -r cache_hits cache_reads < <(cache_reads "$cached_metrics")
echo "{\"label\":\"cache-reads\",\"hits\":$cache_hits,\"reads\":$cache_reads}" >> "$work/results.jsonl"

# Latency at half the peak and memory with 1000 clients, while the service has no other work
# (the runs below leave hundreds of thousands of tasks for the dispatcher and the reaper).
echo "== latency at half the peak, 1000 clients" >&2
peak=$(python3 -c 'import json,statistics,sys; print(int(statistics.median(json.loads(l)["requests_per_sec"] for l in open(sys.argv[1]) if json.loads(l)["label"]=="get-full")))' "$work/results.jsonl")
load --addr "http://127.0.0.1:$full_port" --scenario get --rate $((peak / 2)) --label get-half-peak >> "$work/results.jsonl"
# The bare tonic server at the same rate: what gRPC alone gives p99 there.
load --addr "http://127.0.0.1:$ceiling_port" --scenario get --rate $((peak / 2)) --label get-ceiling-half-peak >> "$work/results.jsonl"
# The read cache's own half peak.
cached_peak=$(python3 -c 'import json,statistics,sys; print(int(statistics.median(json.loads(l)["requests_per_sec"] for l in open(sys.argv[1]) if json.loads(l)["label"]=="get-cached")))' "$work/results.jsonl")
load --addr "http://127.0.0.1:$cached_port" --scenario get --rate $((cached_peak / 2)) --label get-half-peak-cached >> "$work/results.jsonl"
load --addr "http://127.0.0.1:$ceiling_port" --scenario get --rate $((cached_peak / 2)) --label get-ceiling-half-peak-cached >> "$work/results.jsonl"
"$bin/task-bench" run --json --addr "http://127.0.0.1:$full_port" --scenario get --clients 1000 --connections 100 \
  --duration "$DURATION" --pid "$(cat "$work/full.pid")" --label get-1000-clients >> "$work/results.jsonl"

echo "== create without and with a request_id, and with a replica's acknowledgement; mixed; end to end" >&2
# Each create run starts on an empty queue, so that the dispatcher's work on the tasks of the run
# before does not take the cores during it.
settle() {
  "$bin/task-bench" drain --redis-port "$redis_port" --stream bench-full:dispatch --timeout 10m >/dev/null 2>&1
}
for round in $(seq 1 "$ROUNDS"); do
  settle; h2 h2-create-full "$full_port" CreateTask "$work/create.bin" "$full_metrics"
  settle; load --addr "http://127.0.0.1:$full_port" --scenario create --label create-full >> "$work/results.jsonl"
  settle; load --addr "http://127.0.0.1:$full_port" --scenario create-idempotent --label create-idempotent-full >> "$work/results.jsonl"
done
settle
# A replica for these rounds only (it takes CPU of its own while attached): CreateTask with and
# without waiting for its acknowledgement, both while it is attached.
replica_port=$(free_port)
redis-server --port "$replica_port" --save '' --appendonly no --replicaof 127.0.0.1 "$redis_port" \
  --dir "$work" --logfile "$work/replica.log" &
echo $! > "$work/replica.pid"
wait_port "$replica_port"
for _ in $(seq 1 50); do
  redis-cli -p "$replica_port" INFO replication | grep -q 'master_link_status:up' && break; sleep 0.2
done
for round in $(seq 1 "$ROUNDS"); do
  load --addr "http://127.0.0.1:$full_port" --scenario create --label create-full-replica >> "$work/results.jsonl"
  load --addr "http://127.0.0.1:$durable_port" --scenario create --label create-durable >> "$work/results.jsonl"
done
# Its tasks are left queued: the durable instance stops with its replica.
kill "$(cat "$work/durable.pid")" "$(cat "$work/replica.pid")"; rm "$work/durable.pid" "$work/replica.pid"
settle
load --addr "http://127.0.0.1:$full_port" --scenario mixed --label mixed-full >> "$work/results.jsonl"
# End to end: through Redis, the queue, the dispatcher and a Processor that completes at once;
# first the tasks of the mixed run are left to drain, so that e2e has the dispatcher to itself.
settle
"$bin/task-bench" run --json --clients "$CLIENTS" --connections "$CONNECTIONS" --duration 10s \
  --addr "http://127.0.0.1:$full_port" --scenario e2e --label e2e-full >> "$work/results.jsonl"

# CreateTask with the dispatcher idle: nothing listens at this instance's Processor address, so
# its creates are only queued, as while the Processor is down. Above, the dispatcher and the
# instant Processor deliver each created task on the same two cores as the creates; here the
# create path has them to itself. Its tasks stay queued (the 1,000,000-task rounds below start
# from an empty Redis).
echo "== CreateTask with the dispatcher idle (the Processor away)" >&2
intake_metrics=$(free_port)
intake_port=$(start_service intake TASK_RATE_LIMIT_PER_CLIENT=100000000 TASK_METRICS_PORT="$intake_metrics" \
  PROCESSOR_GRPC_ADDR="127.0.0.1:$(free_port)")
for round in $(seq 1 "$ROUNDS"); do
  h2 h2-create-intake "$intake_port" CreateTask "$work/create.bin" "$intake_metrics"
done
kill "$(cat "$work/intake.pid")"; rm "$work/intake.pid"

echo "== 10,000 open watches, woken by Redis and by polling" >&2
watches() {
  "$bin/task-bench" watches --json --redis-port "$redis_port" --watches "${BENCH_WATCHES:-10000}" --idle 10s "$@"
}
watches --addr "http://127.0.0.1:$watch_port" --pid "$(cat "$work/watch.pid")" --label watches-notified >> "$work/results.jsonl"
watches --addr "http://127.0.0.1:$watch_poll_port" --pid "$(cat "$work/watch-poll.pid")" --label watches-polling >> "$work/results.jsonl"

echo "== stored tasks: 10,000$([ "$BIG" = 1 ] && echo ' and 1,000,000')" >&2
# Seeded as CreateTask leaves them: the hash and a member of the creation index.
stored() {
  redis-cli -p "$redis_port" FLUSHALL >/dev/null
  "$bin/task-bench" seed --redis-port "$redis_port" --count "$1" --index-prefix bench-full --json \
    | sed "s/^{/{\"label\":\"seed-$2\",/" >> "$work/results.jsonl"
  load --addr "http://127.0.0.1:$full_port" --scenario get --seeded "$1" --label "get-$2-stored" >> "$work/results.jsonl"
  load --addr "http://127.0.0.1:$full_port" --scenario list --label "list-$2-stored" >> "$work/results.jsonl"
}
stored 10000 10k
[ "$BIG" = 1 ] && stored 1000000 1m

python3 scripts/bench_table.py "$work/results.jsonl"
