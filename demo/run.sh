#!/usr/bin/env bash
# make demo: the fleet end to end on this machine. Starts a redis-server and
# a versitygw S3 server on free loopback ports, uploads sample objects (one
# large, a prefix of many small ones and an empty one), runs two worker
# processes, enqueues both, waits with progress, verifies every byte and
# prints the results. Everything lives under .demo/ and stops at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
BIG=${DEMO_BIG:-300MiB}
SMALL=${DEMO_SMALL:-200}
D=$PWD/.demo
rm -rf "$D" && mkdir -p "$D"/{s3,redis,out,logs}
go build -o bin/demo ./demo

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

REDIS_PORT=$(bin/demo port)
S3_PORT=$(bin/demo port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$D/redis" --save "" --appendonly yes \
  --maxmemory-policy noeviction >"$D/logs/redis.log" 2>&1 &
pids+=($!)
export AWS_ACCESS_KEY_ID=demo-access AWS_SECRET_ACCESS_KEY=demo-secret-key AWS_REGION=us-east-1
.bin/versitygw --port "127.0.0.1:$S3_PORT" --access "$AWS_ACCESS_KEY_ID" --secret "$AWS_SECRET_ACCESS_KEY" \
  --keep-alive --quiet posix "$D/s3" >"$D/logs/s3.log" 2>&1 &
pids+=($!)
export S3FLEET_REDIS="redis://127.0.0.1:$REDIS_PORT/0" S3FLEET_ENDPOINT="http://127.0.0.1:$S3_PORT"
export S3FLEET_PATH_STYLE=true S3FLEET_REGION=us-east-1
bin/demo wait "127.0.0.1:$REDIS_PORT" "127.0.0.1:$S3_PORT"

echo "== seeding s3://demo with sample data"
bin/demo seed -bucket demo -src "$D/src" -big "$BIG" -small "$SMALL"

echo "== starting two workers (logs in .demo/logs/), writing only under $D/out, running only signed tasks"
mkdir -p "$D/out"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$D/task.key" # the key that signs every task
chmod 600 "$D/task.key"
export S3FLEET_TASK_KEY_FILE="$D/task.key"
for i in 1 2; do
  bin/worker --concurrency 8 --allow-dest "$D/out" >"$D/logs/worker-$i.log" 2>&1 &
  pids+=($!)
done

echo "== enqueue s3://demo/big.bin $D/out/big.bin --wait"
bin/enqueue s3://demo/big.bin "$D/out/big.bin" --wait --job demo-big
echo "== enqueue s3://demo/logs/ $D/out/logs/ --wait"
bin/enqueue s3://demo/logs/ "$D/out/logs/" --wait --job demo-logs
echo "== the same enqueue again: nothing is downloaded twice"
bin/enqueue s3://demo/logs/ "$D/out/logs/" --wait --job demo-logs-again

echo "== enqueue status demo-big"
bin/enqueue status demo-big
echo "== verifying every byte against the uploaded copies"

bin/demo verify "$D/src" "$D/out"
echo "demo finished: the fleet downloaded, checked and placed every object."
