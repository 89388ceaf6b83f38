#!/bin/bash
# bench/copy-quick.sh (make bench-copy): 1 GiB uploaded, copied across
# endpoints (versitygw -> MinIO) and copied server-side, by s3fleet with 2
# workers, with s5cmd beside it where s5cmd can do the same (upload, and a
# copy within one endpoint), alternating, on loopback. A quick measurement
# until the bench suite has these rows; prints figures, asserts nothing.
set -e
cd "$(dirname "$0")/.."
if [ ! -x .bin/s5cmd-v2.3.0 ]; then # as bench/suite/run.sh builds it
  dir="$(cd / && go mod download -json github.com/peak/s5cmd/v2@v2.3.0 | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  (cd "$dir" && GOFLAGS=-buildvcs=false go build -mod=mod -o "$OLDPWD/.bin/s5cmd-v2.3.0" .)
fi
W=$(mktemp -d); mkdir -p $W/vgw $W/minio $W/src
redis-server --port 7379 --save '' --appendonly no --daemonize yes --dir $W >/dev/null
.bin/versitygw --port 127.0.0.1:7080 --access vak --secret vsk12345678 --region us-east-1 --quiet posix $W/vgw > $W/vgw.log 2>&1 &
VG=$!
MINIO_ROOT_USER=mak MINIO_ROOT_PASSWORD=msk12345678 .bin/minio server --quiet --address 127.0.0.1:7081 --console-address 127.0.0.1:7082 $W/minio > $W/minio.log 2>&1 &
MI=$!
trap 'kill $VG $MI $W1 $W2 2>/dev/null; redis-cli -p 7379 shutdown nosave >/dev/null 2>&1 || true; rm -rf $W' EXIT
for i in $(seq 100); do # until both servers answer
  curl -s -o /dev/null http://127.0.0.1:7080/ && curl -s -o /dev/null http://127.0.0.1:7081/minio/health/live && break
  sleep 0.2
done
mkdir -p $W/vgw/src $W/vgw/dst
printf '[minio]\naws_access_key_id = mak\naws_secret_access_key = msk12345678\n' > $W/creds; : > $W/awsconfig
cat > $W/s3fleet.yaml <<Y
redis: redis://127.0.0.1:7379/0
endpoint: http://127.0.0.1:7080
path_style: true
remotes:
  minio:
    endpoint: http://127.0.0.1:7081
    path_style: true
    profile: minio
allow_write: ["s3://src/", "s3://dst/", "minio://dst/"]
allow_source: ["$W/src"]
Y
export S3FLEET_CONFIG=$W/s3fleet.yaml AWS_ACCESS_KEY_ID=vak AWS_SECRET_ACCESS_KEY=vsk12345678 AWS_REGION=us-east-1 AWS_SHARED_CREDENTIALS_FILE=$W/creds AWS_CONFIG_FILE=$W/awsconfig AWS_EC2_METADATA_DISABLED=true
head -c 1073741824 /dev/urandom > $W/src/1g.bin
AWS_ACCESS_KEY_ID=mak AWS_SECRET_ACCESS_KEY=msk12345678 .bin/s5cmd-v2.3.0 --endpoint-url http://127.0.0.1:7081 mb s3://dst >/dev/null
bin/worker > $W/w1.log 2>&1 & W1=$!
bin/worker > $W/w2.log 2>&1 & W2=$!
sleep 1
run() { local name=$1; shift; local t0=$(date +%s.%N); bin/enqueue "$@" --wait --quiet; local t1=$(date +%s.%N); echo "$name: $(echo "$t1 - $t0" | bc) s, $(echo "1073.741824 / ($t1 - $t0)" | bc) MB/s"; }
S5=".bin/s5cmd-v2.3.0 --endpoint-url http://127.0.0.1:7080"
s5() { local name=$1; shift; local t0=$(date +%s.%N); $S5 "$@" >/dev/null; local t1=$(date +%s.%N); echo "$name: $(echo "$t1 - $t0" | bc) s, $(echo "1073.741824 / ($t1 - $t0)" | bc) MB/s"; }
for i in 1 2; do
  s5 "s5cmd upload 1 GiB (local -> versitygw)" cp $W/src/1g.bin s3://src/s5-$i.bin
  run "s3fleet upload 1 GiB (local -> versitygw)" $W/src/1g.bin s3://src/fleet-$i.bin
  s5 "s5cmd server-side copy 1 GiB (versitygw)" cp s3://src/s5-$i.bin s3://dst/s5-copy-$i.bin
  run "s3fleet server-side copy 1 GiB (versitygw)" s3://src/fleet-$i.bin s3://dst/fleet-copy-$i.bin
done
cpu0=$(cat /proc/$W1/stat /proc/$W2/stat | awk '{s+=$14+$15} END {print s}')
run "upload 1 GiB (local -> versitygw)" $W/src/1g.bin s3://src/1g.bin
cpu1=$(cat /proc/$W1/stat /proc/$W2/stat | awk '{s+=$14+$15} END {print s}')
run "copy 1 GiB (versitygw -> MinIO)" s3://src/1g.bin minio://dst/1g.bin
cpu2=$(cat /proc/$W1/stat /proc/$W2/stat | awk '{s+=$14+$15} END {print s}')
run "server-side copy 1 GiB (MinIO -> MinIO)" minio://dst/1g.bin minio://dst/1g-copy.bin
cpu3=$(cat /proc/$W1/stat /proc/$W2/stat | awk '{s+=$14+$15} END {print s}')
run "server-side copy 1 GiB (versitygw -> versitygw)" s3://src/1g.bin s3://dst/1g-copy.bin
hz=$(getconf CLK_TCK)
echo "workers' CPU-s per GiB: upload $(echo "($cpu1-$cpu0)/$hz" | bc -l | cut -c1-5), copy $(echo "($cpu2-$cpu1)/$hz" | bc -l | cut -c1-5), server-side $(echo "($cpu3-$cpu2)/$hz" | bc -l | cut -c1-5)"
echo "worker peak RSS: $(grep VmHWM /proc/$W1/status | awk '{print $2}') kB, $(grep VmHWM /proc/$W2/status | awk '{print $2}') kB"
