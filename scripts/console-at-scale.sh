#!/usr/bin/env bash
# The console's pages with many tasks stored: median time of each page over 20 loads with
# 1,000 tasks, then with 1,000,000 (same run, same service), and their ratio. The pages read
# a page of the index and O(1) figures, so the ratio stays near 1.
#   scripts/console-at-scale.sh            # 1,000 then 1,000,000 tasks
#   TASKS=200000 scripts/console-at-scale.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-common.sh
tasks=${TASKS:-1000000}

# Tasks straight into Redis as the service writes them: the hash and its index member; one in
# a thousand PENDING (a rare status, to page through), the rest COMPLETED or FAILED.
load() { # from to
  redis-cli -p "$redis_port" EVAL "
    local now = tonumber(ARGV[3])
    for i = tonumber(ARGV[1]), tonumber(ARGV[2]) do
      local id = string.format('%08x-0000-4000-8000-%012x', i, i)
      local status = (i % 1000 == 0) and 'PENDING' or ((i % 4 == 0) and 'FAILED' or 'COMPLETED')
      local ms = now - (tonumber(ARGV[2]) - i) * 10
      local at = '2026-12-03T00:00:00Z'
      redis.call('HSET', 'task:' .. id, 'task_id', id, 'status', status,
        'original_file_key', 'uploads/' .. i .. '.mp4', 'result_file_key', '', 'error_message', '',
        'created_at', at, 'updated_at', at)
      redis.call('ZADD', 'task-service:tasks', 0, string.format('%013d', 9999999999999 - ms) .. ':' .. id)
    end
    return 'OK'" 0 "$1" "$2" "$(date +%s%3N)" >/dev/null
}

metrics_port=$(free_port)
REDIS_HOST=127.0.0.1 REDIS_PORT=$redis_port PROCESSOR_GRPC_ADDR=127.0.0.1:1 \
  TASK_GRPC_PORT=$(free_port) TASK_METRICS_PORT=$metrics_port RUST_LOG=warn \
  "$bin/task-service" > "$work/service.log" 2>&1 &
echo $! > "$work/service.pid"
wait_port "$metrics_port"

pages=(/console /console/part/overview /console/tasks "/console/tasks?status=PENDING" "/console/tasks?status=FAILED")
median_ms() { # path
  for _ in $(seq 1 20); do
    curl -s -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:$metrics_port$1"
  done | sort -n | awk '{a[NR]=$1} END {printf "%.1f", (a[10]+a[11])/2*1000}'
}
declare -A small
load 1 1000
for page in "${pages[@]}"; do small[$page]=$(median_ms "$page"); done
task="$(printf '%08x-0000-4000-8000-%012x' 500 500)"
small[task]=$(median_ms "/console/tasks/$task")

for ((from = 1001; from <= tasks; from += 100000)); do
  to=$((from + 99999)); ((to > tasks)) && to=$tasks
  load "$from" "$to"
done
echo "stored: $(redis-cli -p "$redis_port" ZCARD task-service:tasks) tasks, Redis using $(redis-cli -p "$redis_port" INFO memory | awk -F: '/^used_memory_human/ {print $2}' | tr -d '\r')"
printf '| page | 1,000 tasks (ms, median of 20) | %s tasks | ratio |\n| --- | ---: | ---: | ---: |\n' "$tasks"
for page in "${pages[@]}" task; do
  path=$page label=$page
  [ "$page" = task ] && path="/console/tasks/$task" label="/console/tasks/<id>"
  large=$(median_ms "$path")
  printf '| `%s` | %s | %s | %.2f |\n' "$label" "${small[$page]}" "$large" "$(echo "$large / ${small[$page]}" | bc -l)"
done
