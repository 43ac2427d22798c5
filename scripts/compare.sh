#!/usr/bin/env bash
# Before and after, in one run: two builds (or two settings) of the service against the same
# Redis, h2load's GetTaskStatus and CreateTask in interleaved rounds (A B, then B A, ...), the bare
# tonic ceiling in each round too; prints medians of OK answers/s, p99, and CPU per answer of the
# service and of Redis (CPU per answer moves less with the machine's other load than rates do).
#
#   cp target/release/task-service /tmp/before && <change, cargo build --release>
#   scripts/compare.sh /tmp/before target/release/task-service
#   COMPARE_A_ENV="TASK_REDIS_CONNECTIONS=1" scripts/compare.sh target/release/task-service target/release/task-service
#
# Settings: COMPARE_ROUNDS (5), COMPARE_SECONDS (5), COMPARE_METHODS ("GetTaskStatus CreateTask"),
# COMPARE_A_ENV / COMPARE_B_ENV (extra environment for either, space-separated VAR=value),
# COMPARE_PACED=RATE (task-bench paced latency), COMPARE_POLLING=TASKS:WRITES (the polling mix).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 2 ] || { sed -n '2,12p' "$0" >&2; exit 2; }
a_bin=$(realpath "$1"); b_bin=$(realpath "$2")
ROUNDS=${COMPARE_ROUNDS:-5}
SECONDS_PER_RUN=${COMPARE_SECONDS:-5}
METHODS=${COMPARE_METHODS:-GetTaskStatus CreateTask}

. scripts/bench-common.sh
. scripts/h2load-common.sh

start_processor

# start NAME BINARY EXTRA_ENV: the service, full stack, the per-client limit never binding.
declare -A port metrics pid
start() {
  local name=$1 binary=$2 extra=$3
  port[$name]=$(free_port); metrics[$name]=$(free_port)
  # shellcheck disable=SC2086
  env -i PATH="$PATH" RUST_LOG=warn TASK_GRPC_HOST=127.0.0.1 TASK_GRPC_PORT="${port[$name]}" \
    TASK_METRICS_PORT="${metrics[$name]}" REDIS_HOST=127.0.0.1 REDIS_PORT="$redis_port" \
    PROCESSOR_GRPC_ADDR="127.0.0.1:$processor_port" TASK_REDIS_KEY_PREFIX="compare-$name" \
    TASK_RATE_LIMIT_PER_CLIENT=100000000 LOCAL_STORAGE_PATH="$work/videos" $extra \
    "$binary" >"$work/$name.log" 2>&1 &
  pid[$name]=$!; echo "${pid[$name]}" > "$work/$name.pid"
  wait_port "${port[$name]}"
}
start A "$a_bin" "${COMPARE_A_ENV:-}"
start B "$b_bin" "${COMPARE_B_ENV:-}"
port[ceiling]=$(free_port)
"$bin/task-bench" ceiling --listen "127.0.0.1:${port[ceiling]}" >"$work/ceiling.log" 2>&1 &
pid[ceiling]=$!; echo "${pid[ceiling]}" > "$work/ceiling.pid"
wait_port "${port[ceiling]}"

# One task for both to read (task hashes are not prefixed, only the service's own keys are),
# completed by the Processor: a final task, as a poll's last read finds it.
task=$("$bin/taskctl" --addr "127.0.0.1:${port[A]}" create compare/original.mp4 | sed -n 's/^task_id: //p')
grpc_body "$work/GetTaskStatus.bin" "$task"
grpc_body "$work/CreateTask.bin" compare/original.mp4
redis_pid=$(cat "$work/redis.pid")

# measure NAME METHOD: one h2load run; a JSON line of OK/s, p99 and CPU per OK answer.
measure() {
  local name=$1 method=$2
  local ok0=0 ok1=0 s0 s1 r0 r1
  [ "$name" != ceiling ] && ok0=$(ok_count "${metrics[$name]}" "$method")
  s0=$(ticks "${pid[$name]}"); r0=$(ticks "$redis_pid")
  h2load_run "${port[$name]}" "$method" "$work/$method.bin" "$SECONDS_PER_RUN" "$work/h2.out" "$work/h2.log"
  s1=$(ticks "${pid[$name]}"); r1=$(ticks "$redis_pid")
  [ "$name" != ceiling ] && ok1=$(ok_count "${metrics[$name]}" "$method")
  # shellcheck disable=SC2046
  python3 - "$name" "$method" $(h2load_figures "$work/h2.out" "$work/h2.log") "$ok0" "$ok1" \
    "$((s1 - s0))" "$((r1 - r0))" "$clock_ticks" <<'PY' >> "$work/results.jsonl"
import json, sys
name, method, rps = sys.argv[1], sys.argv[2], float(sys.argv[3])
done, p99, ok0, ok1, service_ticks, redis_ticks, hz = map(int, sys.argv[4:11])
# The OK count includes the warm-up second: the measured rate is h2load's, scaled by the share
# of answers that were OK.
answered = ok1 - ok0 if name != "ceiling" else None
ok_share = 1.0 if answered is None else min(1.0, answered / max(1, done + rps))
print(json.dumps({"name": name, "method": method, "ok_per_sec": rps * ok_share, "p99_us": p99,
                  "service_us_per_answer": service_ticks * 1e6 / hz / max(1, answered or done + rps),
                  "redis_us_per_answer": redis_ticks * 1e6 / hz / max(1, answered or done + rps)}))
PY
}
# settle NAME: waits until NAME's queue is empty, so that its dispatcher's work on the tasks it
# was asked to create does not run during the next measurement.
settle() {
  "$bin/task-bench" drain --redis-port "$redis_port" --stream "compare-$1:dispatch" --timeout 5m >/dev/null 2>&1
}

echo "== $ROUNDS interleaved rounds of ${SECONDS_PER_RUN}s: A = $1 ${COMPARE_A_ENV:-}, B = $2 ${COMPARE_B_ENV:-}" >&2
for round in $(seq 1 "$ROUNDS"); do
  order="A B"; [ $((round % 2)) -eq 0 ] && order="B A"
  echo "   round $round ($order)" >&2
  measure ceiling GetTaskStatus
  for method in $METHODS; do
    for name in $order; do
      measure "$name" "$method"
      [ "$method" = CreateTask ] && settle "$name"
    done
  done
done

# With COMPARE_PACED=RATE: GetTaskStatus paced at RATE by task-bench (50 clients), A, B and the
# ceiling in each round, for the latency at a load the service is not saturated by.
if [ -n "${COMPARE_PACED:-}" ]; then
  echo "== GetTaskStatus paced at ${COMPARE_PACED}/s" >&2
  for round in $(seq 1 "$ROUNDS"); do
    for name in A B ceiling; do
      "$bin/task-bench" run --json --clients 50 --connections 10 --duration "${SECONDS_PER_RUN}s" \
        --addr "http://127.0.0.1:${port[$name]}" --scenario get --rate "$COMPARE_PACED" --label "$name" \
        | python3 -c 'import json, sys; r = json.load(sys.stdin); print(json.dumps({"name": r["label"], "method": "paced", "ok_per_sec": r["requests_per_sec"], "p99_us": r["latency"]["p99_us"]}))' \
        >> "$work/results.jsonl"
    done
  done
fi

# With COMPARE_POLLING=TASKS:WRITES (say 3000:1000): the polling mix — task-bench's 50 clients read
# TASKS live (PROCESSING) tasks at random as fast as they can while a Processor writes WRITES
# progress updates per second to them; A, B and the ceiling in each round, with the read cache's
# hit share where the service has one.
if [ -n "${COMPARE_POLLING:-}" ]; then
  live=${COMPARE_POLLING%%:*}; writes=${COMPARE_POLLING##*:}
  "$bin/task-bench" seed --live --count "$live" --redis-port "$redis_port" >/dev/null
  echo "== polling mix: $live live tasks, $writes Processor writes/s" >&2
  for round in $(seq 1 "$ROUNDS"); do
    order="A B ceiling"; [ $((round % 2)) -eq 0 ] && order="B A ceiling"
    for name in $order; do
      hits0=0; hits1=0; reads0=0; reads1=0
      if [ "$name" != ceiling ]; then
        read -r hits0 reads0 < <(cache_reads "${metrics[$name]}")
      fi
      s0=$(ticks "${pid[$name]}"); r0=$(ticks "$redis_pid")
      "$bin/task-bench" run --json --clients 50 --connections 10 --duration "${SECONDS_PER_RUN}s" \
        --addr "http://127.0.0.1:${port[$name]}" --scenario get --seeded "$live" --churn "$writes" \
        --redis-port "$redis_port" --label "$name" > "$work/polling.json"
      s1=$(ticks "${pid[$name]}"); r1=$(ticks "$redis_pid")
      if [ "$name" != ceiling ]; then
        read -r hits1 reads1 < <(cache_reads "${metrics[$name]}")
      fi
      python3 - "$work/polling.json" "$((s1 - s0))" "$((r1 - r0))" "$clock_ticks" \
        "$((hits1 - hits0))" "$((reads1 - reads0))" <<'PY' >> "$work/results.jsonl"
import json, sys
r = json.load(open(sys.argv[1]))
service_ticks, redis_ticks, hz, hits, reads = map(int, sys.argv[2:7])
ok = r["codes"].get("OK", 0)
answers = max(1, sum(r["codes"].values()))
print(json.dumps({"name": r["label"], "method": "polling", "ok_per_sec": r["requests_per_sec"] * ok / answers,
                  "p99_us": r["latency"]["p99_us"],
                  "service_us_per_answer": service_ticks * 1e6 / hz / answers,
                  "redis_us_per_answer": redis_ticks * 1e6 / hz / answers,
                  "hit_share": hits / reads if reads else None}))
PY
    done
  done
fi

python3 - "$work/results.jsonl" "$1 ${COMPARE_A_ENV:-}" "$2 ${COMPARE_B_ENV:-}" <<'PY'
import json, statistics, sys
runs = [json.loads(line) for line in open(sys.argv[1])]
def median(name, method, key):
    values = [r[key] for r in runs if r["name"] == name and r["method"] == method]
    return statistics.median(values) if values else None
ceiling = median("ceiling", "GetTaskStatus", "ok_per_sec")
print(f"\nA = {sys.argv[2].strip()}\nB = {sys.argv[3].strip()}")
print(f"ceiling (bare tonic, GetTaskStatus from memory): {ceiling:,.0f}/s, "
      f"{median('ceiling', 'GetTaskStatus', 'service_us_per_answer'):.1f} µs of its CPU per answer\n")
print("| method | A OK/s | B OK/s | B/A | A, B x ceiling | p99 ms A, B | service µs/answer A, B | Redis µs/answer A, B |")
print("| --- | ---: | ---: | ---: | --- | --- | --- | --- |")
for method in dict.fromkeys(r["method"] for r in runs if r["name"] != "ceiling" and r["method"] not in ("paced", "polling")):
    a, b = (median(n, method, "ok_per_sec") for n in "AB")
    pa, pb = (median(n, method, "p99_us") / 1000 for n in "AB")
    sa, sb = (median(n, method, "service_us_per_answer") for n in "AB")
    ra, rb = (median(n, method, "redis_us_per_answer") for n in "AB")
    print(f"| {method} | {a:,.0f} | {b:,.0f} | {b / a:.2f} | {a / ceiling:.2f}, {b / ceiling:.2f} | {pa:.2f}, {pb:.2f} | {sa:.1f}, {sb:.1f} | {ra:.1f}, {rb:.1f} |")
polling = [r for r in runs if r["method"] == "polling"]
if polling:
    c = median("ceiling", "polling", "ok_per_sec")
    a, b = (median(n, "polling", "ok_per_sec") for n in "AB")
    pa, pb, pc = (median(n, "polling", "p99_us") / 1000 for n in ("A", "B", "ceiling"))
    sa, sb = (median(n, "polling", "service_us_per_answer") for n in "AB")
    ra, rb = (median(n, "polling", "redis_us_per_answer") for n in "AB")
    shares = {n: [r["hit_share"] for r in polling if r["name"] == n and r["hit_share"] is not None] for n in "AB"}
    hit = {n: f"{statistics.median(v):.1%}" if v else "-" for n, v in shares.items()}
    print(f"\npolling mix (task-bench, 50 clients; ceiling {c:,.0f}/s, p99 {pc:.2f} ms):")
    print("| A OK/s | B OK/s | B/A | A, B x ceiling | p99 ms A, B | service µs/answer A, B | Redis µs/answer A, B | cache hits A, B |")
    print("| ---: | ---: | ---: | --- | --- | --- | --- | --- |")
    print(f"| {a:,.0f} | {b:,.0f} | {b / a:.2f} | {a / c:.2f}, {b / c:.2f} | {pa:.2f}, {pb:.2f} | {sa:.1f}, {sb:.1f} | {ra:.1f}, {rb:.1f} | {hit['A']}, {hit['B']} |")
paced = [r for r in runs if r["method"] == "paced"]
if paced:
    p99 = {n: median(n, "paced", "p99_us") / 1000 for n in ("A", "B", "ceiling")}
    print(f"\nGetTaskStatus paced (task-bench, 50 clients): p99 A {p99['A']:.2f} ms, B {p99['B']:.2f} ms, "
          f"ceiling {p99['ceiling']:.2f} ms; B/A {p99['B'] / p99['A']:.2f}, B/ceiling {p99['B'] / p99['ceiling']:.2f}")
PY
