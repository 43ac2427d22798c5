#!/usr/bin/env bash
# The backlog benchmark: N tasks created through the API while the Processor is down, then the
# Processor comes back and the queue drains. For 10,000, 100,000 and 1,000,000 waiting tasks it
# prints the drain rate, Redis memory per waiting task and the service's peak memory.
#   scripts/backlog.sh                     # about 4 minutes after the release build
#   BACKLOG_SIZES="10000 100000" scripts/backlog.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${BACKLOG_SIZES:-10000 100000 1000000}

. scripts/bench-common.sh
used_memory() { redis-cli -p "$redis_port" INFO memory | tr -d '\r' | sed -n 's/^used_memory://p'; }

printf '\n| waiting tasks | created at (tasks/s) | Redis memory per waiting task | drain (tasks/s) | first 10 s (tasks/s) | service RSS peak while draining |\n| ---: | ---: | ---: | ---: | ---: | ---: |\n' > "$work/table.md"
for size in $SIZES; do
  redis-cli -p "$redis_port" FLUSHALL >/dev/null
  processor_port=$(free_port)
  service_port=$(free_port)
  env -i PATH="$PATH" RUST_LOG=warn TASK_GRPC_HOST=127.0.0.1 TASK_GRPC_PORT="$service_port" TASK_METRICS_PORT=0 \
    REDIS_HOST=127.0.0.1 REDIS_PORT="$redis_port" PROCESSOR_GRPC_ADDR="127.0.0.1:$processor_port" \
    TASK_RATE_LIMIT_PER_CLIENT=0 TASK_DISPATCH_MAX_AGE=24h TASK_BREAKER_OPEN_FOR=1s \
    "$bin/task-service" >"$work/service.log" 2>&1 &
  echo $! > "$work/service.pid"
  wait_port "$service_port"
  before=$(used_memory)
  echo "== $size tasks created while the Processor is down" >&2
  "$bin/task-bench" run --json --addr "http://127.0.0.1:$service_port" --scenario create --requests "$size" \
    --duration 1h --warmup 0s --clients 50 --connections 10 > "$work/create.json"
  after=$(used_memory)
  echo "== the Processor is back: draining" >&2
  start_processor "$processor_port"
  "$bin/task-bench" drain --json --redis-port "$redis_port" --pid "$(cat "$work/service.pid")" > "$work/drain.json"
  python3 - "$size" "$before" "$after" "$work/create.json" "$work/drain.json" >> "$work/table.md" <<'PY'
import json, sys
size, before, after = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
create, drain = json.load(open(sys.argv[4])), json.load(open(sys.argv[5]))
rss = (drain.get("service_rss_peak_bytes") or 0) / 1048576
print(f"| {size:,} | {create['requests_per_sec']:,.0f} | {(after - before) / size:,.0f} bytes | {drain['tasks_per_sec']:,.0f} | {drain['first_10s_tasks_per_sec']:,.0f} | {rss:.1f} MiB |")
PY
  kill "$(cat "$work/processor.pid")" "$(cat "$work/service.pid")" 2>/dev/null || true
  wait "$(cat "$work/service.pid")" 2>/dev/null || true
done
cat "$work/table.md"
