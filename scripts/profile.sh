#!/usr/bin/env bash
# Where the service's time goes under load: perf samples (flat, 999 Hz) of the release service
# (full stack, the per-client limit never binding) while h2load sends GetTaskStatus, then
# CreateTask, over 10 connections x 5 streams; prints each profile's share by binary and its top
# symbols by self time, and the share of the machine's CPU the service, Redis and h2load took.
#   scripts/profile.sh                      # 15 s per method
#   PROFILE_SECONDS=30 scripts/profile.sh
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${PROFILE_SECONDS:-15}
command -v perf >/dev/null || {
  echo "installing Debian's linux-perf" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends linux-perf >/dev/null
}
. scripts/bench-common.sh
. scripts/h2load-common.sh

start_processor
port=$(free_port)
metrics_port=$(free_port)
env -i PATH="$PATH" RUST_LOG=warn TASK_GRPC_HOST=127.0.0.1 TASK_GRPC_PORT="$port" TASK_METRICS_PORT="$metrics_port" \
  REDIS_HOST=127.0.0.1 REDIS_PORT="$redis_port" PROCESSOR_GRPC_ADDR="127.0.0.1:$processor_port" \
  TASK_RATE_LIMIT_PER_CLIENT=100000000 LOCAL_STORAGE_PATH="$work/videos" \
  "$bin/task-service" >"$work/service.log" 2>&1 &
service_pid=$!
echo $service_pid > "$work/service.pid"
wait_port "$port"
task=$("$bin/taskctl" --addr "127.0.0.1:$port" create profile/original.mp4 | sed -n 's/^task_id: //p')

grpc_body "$work/get.bin" "$task"
grpc_body "$work/create.bin" profile/original.mp4
redis_pid=$(cat "$work/redis.pid")

for method in GetTaskStatus CreateTask; do
  body=$work/get.bin; [ "$method" = CreateTask ] && body=$work/create.bin
  # Runs past the sampling window; stopped after it.
  h2load -c 10 -m 5 -D "$((seconds + 60))" -d "$body" -H 'content-type: application/grpc' -H 'te: trailers' \
    "http://127.0.0.1:$port/task.Task/$method" > "$work/h2.out" 2>&1 &
  h2=$!
  sleep 2
  kill -0 "$h2" 2>/dev/null || { echo "h2load stopped:" >&2; cat "$work/h2.out" >&2; exit 1; }
  # The same load unsampled first, for what sampling costs.
  u0=$(ok_count "$metrics_port" "$method"); ut0=$(date +%s%N); sleep "$seconds"; u1=$(ok_count "$metrics_port" "$method"); ut1=$(date +%s%N)
  s0=$(ticks "$service_pid"); r0=$(ticks "$redis_pid"); h0=$(ticks "$h2"); ok0=$(ok_count "$metrics_port" "$method"); t0=$(date +%s%N)
  perf record -F 999 -p "$service_pid" -o "$work/$method.perf" -- sleep "$seconds" 2>/dev/null >/dev/null
  s1=$(ticks "$service_pid"); r1=$(ticks "$redis_pid"); h1=$(ticks "$h2"); ok1=$(ok_count "$metrics_port" "$method"); t1=$(date +%s%N)
  kill "$h2"; wait "$h2" 2>/dev/null || true
  ms=$(( (t1 - t0) / 1000000 ))
  echo "== $method under h2load (10 connections x 5 streams): $(( (u1 - u0) * 1000000000 / (ut1 - ut0) )) OK answers/s unsampled, $(( (ok1 - ok0) * 1000 / ms ))/s while sampled"
  echo "   CPU while sampled (2 cores = 200%): service $(( (s1 - s0) * 100000 / clock_ticks / ms ))%, redis $(( (r1 - r0) * 100000 / clock_ticks / ms ))%, h2load $(( (h1 - h0) * 100000 / clock_ticks / ms ))%"
  echo "   where, by binary:"
  perf report -i "$work/$method.perf" --sort dso --stdio 2>/dev/null \
    | grep -E '^ +[0-9.]+%' | head -n 6 | sed 's/ *$//' || true
  echo "   the top symbols (self time):"
  perf report -i "$work/$method.perf" --sort symbol --stdio 2>/dev/null \
    | grep -E '^ +[0-9.]+%' | head -n "${PROFILE_TOP:-30}" | sed 's/ *$//' | cut -c1-150 || true
done
