#!/usr/bin/env bash
# The queue comparison, in one command: eddy (with its raw redis-crate
# baseline, same process), LeanMQ 0.2 (Python; sending in transactions of
# --batch, and one message per call) and BullMQ 6 (Node), each run --runs
# times against the same Redis, interleaved, then medians.
#
#   bash bench/compare/run.sh                      # spawns a private redis-server
#   bash bench/compare/run.sh --url redis://127.0.0.1:6380/0 --runs 3
#
# Options: --url URL, --runs N (3), --eddy-messages N (200000),
# --leanmq-messages N (20000), --bullmq-messages N (50000), --batch B (100),
# --payload-bytes S (200), --window W (10000), --concurrency C (BullMQ
# worker concurrency, 50), --out FILE (the JSON lines; default a temp file),
# --eddy PATH (an eddy binary to use instead of building target/release/eddy).
# Needs: cargo, python3 (venv), node + npm, redis-server (unless --url).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

url=""
runs=3
eddy_messages=200000
leanmq_messages=20000
bullmq_messages=50000
batch=100
payload=200
window=10000
concurrency=50
out=""
eddy=""
while [ $# -gt 0 ]; do
  case "$1" in
    --url) url="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --eddy-messages) eddy_messages="$2"; shift 2 ;;
    --leanmq-messages) leanmq_messages="$2"; shift 2 ;;
    --bullmq-messages) bullmq_messages="$2"; shift 2 ;;
    --batch) batch="$2"; shift 2 ;;
    --payload-bytes) payload="$2"; shift 2 ;;
    --window) window="$2"; shift 2 ;;
    --concurrency) concurrency="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --eddy) eddy="$2"; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

redis_pid=""
redis_dir=""
cleanup() {
  if [ -n "$redis_pid" ]; then kill "$redis_pid" 2>/dev/null || true; wait "$redis_pid" 2>/dev/null || true; fi
  if [ -n "$redis_dir" ]; then rm -rf "$redis_dir"; fi
}
trap cleanup EXIT

if [ -z "$url" ]; then
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  redis_dir="$(mktemp -d)"
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$redis_dir" \
    >"$redis_dir/redis.log" 2>&1 &
  redis_pid=$!
  for _ in $(seq 100); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  url="redis://127.0.0.1:$port/0"
  echo "private redis-server on $url" >&2
fi

if [ -z "$eddy" ]; then
  echo "building eddy (release)..." >&2
  (cd "$root" && cargo build --release -q -p eddy-cli)
  eddy="$root/target/release/eddy"
fi

venv="$root/.venv"
if ! "$venv/bin/python" -c 'import leanmq' 2>/dev/null; then
  echo "creating $venv with leanmq 0.2.0..." >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q leanmq==0.2.0
fi

if [ ! -d "$here/bullmq/node_modules" ]; then
  echo "installing bullmq (npm ci)..." >&2
  (cd "$here/bullmq" && npm ci --no-audit --no-fund --silent)
fi

if [ -z "$out" ]; then out="$(mktemp -t eddy-compare-XXXXXX.jsonl)"; fi
: >"$out"
for i in $(seq "$runs"); do
  echo "run $i of $runs (load $(cut -d' ' -f1 /proc/loadavg))" >&2
  "$eddy" bench queue --url "$url" --messages "$eddy_messages" --batch "$batch" \
    --payload-bytes "$payload" --window "$window" --json 2>/dev/null >>"$out"
  "$venv/bin/python" "$here/leanmq/queue_bench.py" --url "$url" --messages "$leanmq_messages" \
    --batch "$batch" --payload-bytes "$payload" --window "$window" 2>/dev/null >>"$out"
  "$venv/bin/python" "$here/leanmq/queue_bench.py" --url "$url" --messages "$leanmq_messages" \
    --batch "$batch" --payload-bytes "$payload" --window "$window" --send single 2>/dev/null >>"$out"
  node "$here/bullmq/queue_bench.mjs" --url "$url" --messages "$bullmq_messages" \
    --batch "$batch" --concurrency "$concurrency" --payload-bytes "$payload" \
    --window "$window" 2>/dev/null >>"$out"
done

python3 "$here/summarize.py" "$out" "$(redis-cli -u "$url" info server | tr -d '\r' | sed -n 's/^redis_version://p')"
echo "raw results: $out" >&2
