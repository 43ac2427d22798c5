"""Prints the benchmark's table (medians of the rounds, and ratios) from task-bench's JSON lines."""
import json
import statistics
import sys

runs = {}
for line in open(sys.argv[1]):
    run = json.loads(line)
    runs.setdefault(run["label"], []).append(run)


def median(label, key=lambda r: r["requests_per_sec"]):
    values = [key(r) for r in runs.get(label, [])]
    return statistics.median(values) if values else None


def p99_ms(label):
    value = median(label, lambda r: r["latency"]["p99_us"])
    return None if value is None else value / 1000


def fmt(value, spec="{:,.0f}"):
    return "-" if value is None else spec.format(value)


def ratio(a, b):
    return None if a is None or not b else a / b


hgetall, hset = median("redis-hgetall"), median("redis-hset")
full, minimal, ceiling = median("get-full"), median("get-minimal"), median("get-ceiling")
rounds = len(runs.get("get-full", []))

print()
print(f"| measurement (median of {rounds} rounds where repeated) | requests/s | p99 ms | ratio |")
print("| --- | ---: | ---: | --- |")
print(f"| redis-benchmark HGETALL, 7-field hash, -c 50 | {fmt(hgetall)} | - | baseline |")
print(f"| redis-benchmark HSET, 7 fields, -c 50 | {fmt(hset)} | - | baseline |")
print(f"| bare tonic, GetTaskStatus from memory (gRPC ceiling) | {fmt(ceiling)} | {fmt(p99_ms('get-ceiling'), '{:.2f}')} | {fmt(ratio(ceiling, hgetall), '{:.2f}')} x HGETALL |")
print(f"| GetTaskStatus, every optional layer off | {fmt(minimal)} | {fmt(p99_ms('get-minimal'), '{:.2f}')} | {fmt(ratio(minimal, hgetall), '{:.2f}')} x HGETALL |")
print(f"| GetTaskStatus, full stack | {fmt(full)} | {fmt(p99_ms('get-full'), '{:.2f}')} | {fmt(ratio(full, hgetall), '{:.2f}')} x HGETALL, {fmt(ratio(full, minimal), '{:.2f}')} x no layers, {fmt(ratio(full, ceiling), '{:.2f}')} x ceiling |")
cached = median("get-cached")
if cached:
    print(f"| GetTaskStatus, full stack, read cache on | {fmt(cached)} | {fmt(p99_ms('get-cached'), '{:.2f}')} | {fmt(ratio(cached, full), '{:.2f}')} x off, {fmt(ratio(cached, ceiling), '{:.2f}')} x ceiling |")
polling_full, polling_cached = median("polling-full"), median("polling-cached")
if polling_full:
    reads = runs.get("cache-reads", [None])[0]
    hits = f", {reads['hits'] / reads['reads']:.1%} of the cached instance's reads from memory" if reads and reads["reads"] else ""
    print(f"| polling mix (3,000 live tasks, 1,000 Processor writes/s), read cache off | {fmt(polling_full)} | {fmt(p99_ms('polling-full'), '{:.2f}')} | {fmt(ratio(polling_full, ceiling), '{:.2f}')} x ceiling |")
    print(f"| polling mix, read cache on | {fmt(polling_cached)} | {fmt(p99_ms('polling-cached'), '{:.2f}')} | {fmt(ratio(polling_cached, polling_full), '{:.2f}')} x off, {fmt(ratio(polling_cached, ceiling), '{:.2f}')} x ceiling{hits} |")
for label, name in [("create-full", "CreateTask, full stack"), ("mixed-full", "mixed 1:9 create:get, full stack")]:
    value = median(label)
    print(f"| {name} | {fmt(value)} | {fmt(p99_ms(label), '{:.2f}')} | {fmt(ratio(value, hset), '{:.2f}')} x HSET |")
create, idempotent = median("create-full"), median("create-idempotent-full")
print(f"| CreateTask with a request_id, full stack | {fmt(idempotent)} | {fmt(p99_ms('create-idempotent-full'), '{:.2f}')} | {fmt(ratio(idempotent, create), '{:.2f}')} x without |")
durable, with_replica = median("create-durable"), median("create-full-replica")
print(f"| CreateTask, a replica attached, TASK_REDIS_MIN_REPLICAS_ACKED=0 | {fmt(with_replica)} | {fmt(p99_ms('create-full-replica'), '{:.2f}')} | {fmt(ratio(with_replica, create), '{:.2f}')} x with no replica |")
print(f"| CreateTask, TASK_REDIS_MIN_REPLICAS_ACKED=1 (one replica, WAIT 1) | {fmt(durable)} | {fmt(p99_ms('create-durable'), '{:.2f}')} | {fmt(ratio(durable, with_replica), '{:.2f}')} x with 0 |")
half = runs.get("get-half-peak", [None])[0]
half_ceiling = runs.get("get-ceiling-half-peak", [None])[0]
if half:
    against = ""
    if half_ceiling:
        against = f", {half['latency']['p99_us'] / max(1, half_ceiling['latency']['p99_us']):.2f} x the ceiling's {half_ceiling['latency']['p99_us'] / 1000:.2f} ms at the same rate (target <= 2 x)"
    print(f"| GetTaskStatus paced at half the peak ({half['target_rate']:,.0f}/s) | {half['requests_per_sec']:,.0f} | {half['latency']['p99_us'] / 1000:.2f} | target p99 <= 2 ms{against} |")
half_cached = runs.get("get-half-peak-cached", [None])[0]
half_ceiling_cached = runs.get("get-ceiling-half-peak-cached", [None])[0]
if half_cached and half_ceiling_cached:
    print(f"| GetTaskStatus, read cache on, paced at its half peak ({half_cached['target_rate']:,.0f}/s) | {half_cached['requests_per_sec']:,.0f} | {half_cached['latency']['p99_us'] / 1000:.2f} | {half_cached['latency']['p99_us'] / max(1, half_ceiling_cached['latency']['p99_us']):.2f} x the ceiling's {half_ceiling_cached['latency']['p99_us'] / 1000:.2f} ms at the same rate |")
many = runs.get("get-1000-clients", [None])[0]
if many:
    rss = many.get("server_rss_peak_bytes") or 0
    print(f"| GetTaskStatus, 1000 clients | {many['requests_per_sec']:,.0f} | {many['latency']['p99_us'] / 1000:.2f} | server RSS peak {rss / 1048576:.1f} MiB (target <= 64) |")
for label, seed in [("get-10k-stored", "seed-10k"), ("get-1m-stored", "seed-1m")]:
    if label in runs:
        per_task = runs[seed][0]["bytes_per_task"]
        value = median(label)
        print(f"| GetTaskStatus with {runs[seed][0]['tasks']:,} stored tasks | {fmt(value)} | {fmt(p99_ms(label), '{:.2f}')} | {per_task:,.0f} bytes of Redis memory per task |")
list_10k, list_1m = median("list-10k-stored"), median("list-1m-stored")
for label, value in [("list-10k-stored", list_10k), ("list-1m-stored", list_1m)]:
    if value is not None:
        tasks = runs[label.replace("list", "seed").replace("-stored", "")][0]["tasks"]
        note = f"{fmt(ratio(list_1m, list_10k), '{:.2f}')} x with 10,000 stored" if label == "list-1m-stored" else "pages of 50, walked on"
        print(f"| ListTasks with {tasks:,} stored tasks | {fmt(value)} | {fmt(p99_ms(label), '{:.2f}')} | {note} |")
for label, how in [("watches-notified", "woken by Redis"), ("watches-polling", "polling every 1 s")]:
    w = runs.get(label, [None])[0]
    if w:
        grown = (w["rss_open_bytes"] or 0) - (w["rss_before_bytes"] or 0)
        extra = w["redis_commands_per_sec_idle_with"] - w["redis_commands_per_sec_idle_without"]
        print(f"| {w['opened']:,} open watches, {how} | - | {w['end_latency']['p99_us'] / 1000:.1f} to see COMPLETED | RSS +{grown / 1048576:.1f} MiB ({grown / max(w['opened'], 1):,.0f} B/watch); Redis idle {w['redis_commands_per_sec_idle_without']:,.0f} -> {w['redis_commands_per_sec_idle_with']:,.0f} cmds/s ({extra / max(w['opened'], 1):.3f} per watch per s); {w['ended_completed']:,} ended COMPLETED, {w['ended_otherwise']} otherwise; median {w['end_latency']['p50_us'] / 1000:.1f} ms |")
e2e = runs.get("e2e-full", [None])[0]
if e2e:
    e = e2e["e2e"]
    print(f"| end to end: CreateTask until COMPLETED | {e['tasks_per_sec']:,.0f} tasks/s | - | {e['created']:,} created, {e['completed']:,} COMPLETED, {e['failed']} FAILED, {e['lost']} lost (target >= 6,000/s, 0 lost) |")
h2_ceiling = median("h2-get-ceiling")
if h2_ceiling:
    print()
    print(f"h2load, 10 connections x 5 streams (median of {len(runs.get('h2-get-full', []))} rounds; OK answers counted by the service's own metrics, h2load's 1 s warm-up included, against the requests h2load counted done in the measured period):")
    print()
    print("| served by (h2load) | requests/s | p99 ms | OK answers / done | ratio to the ceiling |")
    print("| --- | ---: | ---: | ---: | --- |")
    for label, name in [("h2-get-ceiling", "bare tonic, GetTaskStatus from memory (ceiling)"),
                        ("h2-get-minimal", "GetTaskStatus, every optional layer off"),
                        ("h2-get-full", "GetTaskStatus, full stack"),
                        ("h2-get-cached", "GetTaskStatus, full stack, read cache on (one task, read again and again)"),
                        ("h2-create-full", "CreateTask, full stack"),
                        ("h2-create-intake", "CreateTask, full stack, the dispatcher idle (the Processor away)")]:
        value = median(label)
        last = runs.get(label, [None])[-1]
        ok = "-" if not last or last.get("ok") is None else f"{last['ok']:,} / {last['done']:,}"
        print(f"| {name} | {fmt(value)} | {fmt(p99_ms(label), '{:.2f}')} | {ok} | {fmt(ratio(value, h2_ceiling), '{:.2f}')} x |")
targets = []
h2_get, h2_create = median("h2-get-full"), median("h2-create-full")
if h2_ceiling:
    targets.append(("GetTaskStatus >= 0.6 x the ceiling (h2load)", ratio(h2_get, h2_ceiling), lambda v: v >= 0.6, "{:.2f} x"))
    if median("h2-get-cached"):
        targets.append(("GetTaskStatus >= 0.6 x the ceiling (h2load), read cache on", ratio(median("h2-get-cached"), h2_ceiling), lambda v: v >= 0.6, "{:.2f} x"))
    if polling_cached:
        targets.append(("GetTaskStatus >= 0.6 x the ceiling, polling mix (task-bench), read cache on", ratio(polling_cached, ceiling), lambda v: v >= 0.6, "{:.2f} x"))
    targets.append(("CreateTask >= 0.4 x the ceiling (h2load)", ratio(h2_create, h2_ceiling), lambda v: v >= 0.4, "{:.2f} x"))
    h2_create_intake = median("h2-create-intake")
    if h2_create_intake:
        targets.append(("the same, the dispatcher idle (the Processor away)", ratio(h2_create_intake, h2_ceiling), lambda v: v >= 0.4, "{:.2f} x"))
if half:
    targets.append(("p99 at half the peak <= 2 ms (task-bench, paced)", half["latency"]["p99_us"] / 1000, lambda v: v <= 2, "{:.2f} ms"))
if half and half_ceiling:
    targets.append(("p99 at half the peak <= 2 x the ceiling's at that rate", half["latency"]["p99_us"] / max(1, half_ceiling["latency"]["p99_us"]), lambda v: v <= 2, "{:.2f} x"))
if half_cached and half_ceiling_cached:
    targets.append(("p99 at half the peak <= 2 ms, read cache on", half_cached["latency"]["p99_us"] / 1000, lambda v: v <= 2, "{:.2f} ms"))
    targets.append(("p99 at half the peak <= 2 x the ceiling's, read cache on", half_cached["latency"]["p99_us"] / max(1, half_ceiling_cached["latency"]["p99_us"]), lambda v: v <= 2, "{:.2f} x"))
if e2e:
    lost = e2e["e2e"]["lost"]
    targets.append((f"end to end >= 6,000 tasks/s, 0 lost ({lost} lost)", e2e["e2e"]["tasks_per_sec"], lambda v: v >= 6000 and lost == 0, "{:,.0f} tasks/s"))
if targets:
    print()
    print("| target | this run | met |")
    print("| --- | ---: | --- |")
    for name, value, met, spec in targets:
        print(f"| {name} | {fmt(value, spec)} | {'-' if value is None else ('yes' if met(value) else 'no')} |")
errors = {label: {c: n for c, n in r[0].get("codes", {}).items() if c != "OK"} for label, r in runs.items() if r[0].get("codes")}
errors = {k: v for k, v in errors.items() if v}
print()
print("errors by code:", errors if errors else "none")
