# Sourced by bench.sh and backlog.sh: Debian's Redis tools, the release build, a work directory
# whose processes are stopped on exit, a Redis of its own on a free port, and port helpers.
# Sets: bin, work, redis_port. Defines start_processor.

command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null || {
  echo "installing Debian's redis-server and redis-tools" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server redis-tools >/dev/null
}
cargo build --release --workspace --bins --quiet
bin=target/release
work=$(mktemp -d)
cleanup() {
  for pidfile in "$work"/*.pid; do [ -e "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "nothing listens on $1" >&2; return 1; }

# No persistence (the benchmarks measure the service, not the disk); noeviction, as in production.
redis_port=$(free_port)
redis-server --port "$redis_port" --save '' --appendonly no --maxmemory-policy noeviction \
  --logfile "$work/redis.log" &
echo $! > "$work/redis.pid"
wait_port "$redis_port"

# start_processor [PORT]: the instant Processor (`task-bench processor`, PROCESSING then COMPLETED
# at once) on PORT, or on a free port; sets processor_port, records its pid.
start_processor() {
  processor_port=${1:-$(free_port)}
  REDIS_HOST=127.0.0.1 REDIS_PORT=$redis_port "$bin/task-bench" processor --listen "127.0.0.1:$processor_port" \
    >"$work/processor.log" 2>&1 &
  echo $! > "$work/processor.pid"
}
