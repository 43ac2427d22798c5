#!/usr/bin/env bash
# What one task costs Redis, end to end (CreateTask, dispatch, the Processor's writes, the
# reaper's TTL, reads by a polling client): commands per task by command, Redis CPU per 1,000
# tasks/s, and memory per stored task — the figures docs/scaling.md reasons from.
#   scripts/redis-cost.sh              # about 1 minute after the release build
#   COST_RATE=2000 COST_SECONDS=20 scripts/redis-cost.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${COST_RATE:-1000}
SECONDS_=${COST_SECONDS:-15}

. scripts/bench-common.sh

start_processor
service_port=$(free_port)
env -i PATH="$PATH" RUST_LOG=warn TASK_GRPC_HOST=127.0.0.1 TASK_GRPC_PORT="$service_port" TASK_METRICS_PORT=0 \
  REDIS_HOST=127.0.0.1 REDIS_PORT="$redis_port" PROCESSOR_GRPC_ADDR="127.0.0.1:$processor_port" \
  TASK_RATE_LIMIT_PER_CLIENT=0 LOCAL_STORAGE_PATH="$work/videos" "$bin/task-service" >"$work/service.log" 2>&1 &
echo $! > "$work/service.pid"
wait_port "$service_port"
sleep 2

redis_pid=$(cat "$work/redis.pid")
cpu_ticks() { awk '{print $14 + $15}' "/proc/$redis_pid/stat"; }
redis-cli -p "$redis_port" CONFIG RESETSTAT >/dev/null
memory_before=$(redis-cli -p "$redis_port" INFO memory | tr -d '\r' | sed -n 's/^used_memory://p')
ticks_before=$(cpu_ticks)
echo "== ${SECONDS_} s of CreateTask at $RATE/s; then each task read (GetTaskStatus) until COMPLETED" >&2
"$bin/task-bench" run --json --addr "http://127.0.0.1:$service_port" --scenario e2e --rate "$RATE" \
  --clients 50 --connections 10 --duration "${SECONDS_}s" --warmup 0s > "$work/e2e.json"
# The reaper gives the final tasks their TTL within its interval.
sleep 6
ticks_after=$(cpu_ticks)
memory_after=$(redis-cli -p "$redis_port" INFO memory | tr -d '\r' | sed -n 's/^used_memory://p')
redis-cli -p "$redis_port" INFO commandstats | tr -d '\r' > "$work/commandstats.txt"
python3 - "$work/e2e.json" "$work/commandstats.txt" "$ticks_before" "$ticks_after" "$memory_before" "$memory_after" "$(getconf CLK_TCK)" <<'PY'
import json, re, sys
e2e = json.load(open(sys.argv[1]))
tasks = e2e["e2e"]["completed"] + e2e["e2e"]["failed"]
stats = {}
for line in open(sys.argv[2]):
    m = re.match(r"cmdstat_([^:]+):calls=(\d+),usec=(\d+)", line)
    if m:
        stats[m.group(1)] = (int(m.group(2)), int(m.group(3)))
ticks = int(sys.argv[4]) - int(sys.argv[3])
hz = int(sys.argv[7])
cpu_s = ticks / hz
memory = int(sys.argv[6]) - int(sys.argv[5])
total = sum(c for c, _ in stats.values())
print()
print(f"{tasks:,} tasks created and COMPLETED ({e2e['e2e']['lost']} lost), {e2e['requests_per_sec']:,.0f} created/s")
print()
print("| command | calls per task | Redis time per task (µs) |")
print("| --- | ---: | ---: |")
for name, (calls, usec) in sorted(stats.items(), key=lambda kv: -kv[1][0]):
    if name in ("config|resetstat", "info"):
        continue
    print(f"| {name} | {calls / tasks:.2f} | {usec / tasks:.1f} |")
print(f"| **all** | **{total / tasks:.2f}** | **{sum(u for _, u in stats.values()) / tasks:.1f}** |")
print()
print(f"Redis CPU: {cpu_s:.2f} s for {tasks:,} tasks = {cpu_s / tasks * 1e6:.0f} µs per task, "
      f"{cpu_s / tasks * 1000 * 100:.0f}% of one core per 1,000 tasks/s")
print(f"Redis memory per stored (COMPLETED) task: {memory / max(tasks, 1):,.0f} bytes (hash, index member, TTL)")
PY
