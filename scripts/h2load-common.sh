# Sourced by bench.sh, compare.sh and profile.sh, after bench-common.sh: h2load (Debian's
# nghttp2-client), gRPC request bodies for it, the service's OK count, and CPU ticks of a process.
# h2load counts gRPC errors (HTTP 200 with an error in the trailers) as done, so the service's own
# metrics give the OK count.

command -v h2load >/dev/null || {
  echo "installing Debian's nghttp2-client (h2load)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nghttp2-client >/dev/null
}

# grpc_body FILE TEXT: a gRPC frame holding a message whose field 1 (task_id, or
# original_file_key) is TEXT.
grpc_body() { python3 - "$@" <<'PY'
import struct, sys
out, text = sys.argv[1], sys.argv[2].encode()
message = bytes([0x0A, len(text)]) + text
open(out, "wb").write(b"\x00" + struct.pack(">I", len(message)) + message)
PY
}

# ok_count METRICS_PORT METHOD: the service's OK answers to METHOD so far.
ok_count() {
  curl -s "http://127.0.0.1:$1/metrics" | python3 -c '
import re, sys
method = sys.argv[1]
print(int(sum(float(v) for labels, v in re.findall(r"^task_rpc_requests_total\{([^}]*)\} (\S+)$", sys.stdin.read(), re.M)
              if f"method=\"/task.Task/{method}\"" in labels and "code=\"OK\"" in labels)))' "$2"
}

# cache_reads METRICS_PORT: the read cache's hits and all its reads so far ("0 0" without one).
cache_reads() {
  curl -s "http://127.0.0.1:$1/metrics" | awk '
    /^task_read_cache_reads_total\{result="hit"\}/ { hits = $2 }
    /^task_read_cache_reads_total\{/ { reads += $2 }
    END { printf "%d %d\n", hits, reads }'
}
# ticks PID: the CPU time PID has used so far, in clock ticks (user + system).
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
clock_ticks=$(getconf CLK_TCK)

# h2load_run PORT METHOD BODY SECONDS OUT [LOG]: h2load's 10 connections x 5 streams on METHOD
# for SECONDS after a 1 s warm-up; its summary in OUT, each request's latency in LOG (emptied
# first: h2load appends to it).
h2load_run() {
  local port=$1 method=$2 body=$3 seconds=$4 out=$5 log=${6:-}
  [ -n "$log" ] && rm -f "$log"
  h2load -c 10 -m 5 -D "$seconds" --warm-up-time 1 -d "$body" ${log:+--log-file "$log"} \
    -H 'content-type: application/grpc' -H 'te: trailers' \
    "http://127.0.0.1:$port/task.Task/$method" > "$out" 2>&1
}

# h2load_figures OUT LOG: from one h2load_run, "REQUESTS_PER_SEC DONE P99_US" (requests done in
# the measured period; the p99 of the latencies in LOG).
h2load_figures() { python3 - "$@" <<'PY'
import re, sys
out = open(sys.argv[1]).read()
rps = float(re.search(r"finished in [^,]+, ([\d.]+) req/s", out).group(1))
done = int(re.search(r"requests: \d+ total, \d+ started, (\d+) done", out).group(1))
lat = sorted(int(line.split("\t")[2]) for line in open(sys.argv[2]) if line.strip())
print(rps, done, lat[int(len(lat) * 0.99)] if lat else 0)
PY
}
