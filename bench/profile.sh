#!/usr/bin/env bash
# profile.sh: where s3fleet's workers spend their CPU in one bench cell.
# Runs the suite (bench/suite/run.sh) on CELL with s3fleet 2w alone under
# a system-wide perf record, keeps a copy of the worker binary it built
# (the suite's build directory is removed when it ends), and prints the
# workers' samples: user against kernel, by package group, the top
# functions and the top kernel symbols. As root (perf -a).
#
#   bench/profile.sh 'big/tls/scratch:4'
#   bench/profile.sh 'big/loopback/durable:4'
set -euo pipefail
cell=${1:-big/tls/scratch:4}
seconds=${SECONDS_TO_RECORD:-40}
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
command -v perf >/dev/null || { echo "profile.sh: perf not found (apt-get install linux-perf)" >&2; exit 2; }

perf record -a -g -F 999 -o "$tmp/perf.data" -- sleep "$seconds" >"$tmp/perf.log" 2>&1 &
perfpid=$!
"$root/bench/suite/run.sh" quick -cells "$cell" -contenders '^s3fleet 2w$' \
	-out bench/out/profile.md -chart bench/out/profile.png >"$tmp/suite.log" 2>&1 &
suitepid=$!
for _ in $(seq 1 240); do # the worker binary, once built
	if f=$(ls /tmp/s3fleet-suite-*/bin/worker 2>/dev/null | head -1) && [ -n "$f" ]; then
		sleep 2
		cp "$f" "$tmp/worker"
		break
	fi
	sleep 0.5
done
wait "$suitepid" || { tail -20 "$tmp/suite.log" >&2; exit 1; }
wait "$perfpid" || true
[ -f "$tmp/worker" ] || { echo "profile.sh: never saw the suite's worker binary" >&2; exit 1; }
grep -E "^\| big|^\| small|^\| mixed" "$root/bench/out/profile.md" | head -4 || true
# -n: sample counts (the percentages are rounded to 0.01 %, and a Go
# binary's unresolved addresses spread its samples over many rows)
perf report -i "$tmp/perf.data" --no-children --comm worker --sort sym -g none -q -n 2>/dev/null >"$tmp/syms.txt"
python3 - "$tmp/syms.txt" "$tmp/worker" <<'PY'
import collections, re, subprocess, sys
rows = []
for line in open(sys.argv[1]):
    m = re.match(r'\s*[\d.]+%\s+(\d+)\s+\[(.)\]\s+(\S+)', line)
    if m:
        rows.append((int(m.group(1)), m.group(2), m.group(3)))
total = sum(r[0] for r in rows) or 1
user = [r for r in rows if r[1] == '.' and r[2].startswith('0x')]
kern = [r for r in rows if r[1] == 'k']
# perf leaves the deleted binary's addresses unresolved, relative to its
# mapping: a Go executable (not PIE) is mapped at 0x400000.
addrs = [hex(int(r[2], 16) + 0x400000) for r in user]
out = subprocess.run(['go', 'tool', 'addr2line', sys.argv[2]], input='\n'.join(addrs) + '\n',
                     capture_output=True, text=True).stdout.split('\n')[0::2]
funcs = collections.Counter()
for (p, _, _), f in zip(user, out):
    funcs[f] += p
groups = [('aes', 'AES-GCM (TLS decryption)'), ('gcm', 'AES-GCM (TLS decryption)'), ('crc', 'CRC (checksums)'),
          ('memmove', 'memmove'), ('runtime.gc', 'GC'), ('runtime.scan', 'GC'), ('mallocgc', 'malloc'),
          ('runtime', 'runtime, other'), ('crypto/tls', 'crypto/tls'), ('net/http', 'net/http'),
          ('go-redis', 'Redis client'), ('asynq', 'asynq'), ('syscall', 'syscalls (user side)'), ('internal/poll', 'syscalls (user side)')]
by = collections.Counter()
for f, p in funcs.items():
    by[next((g for k, g in groups if k in f.lower()), f.rsplit('/', 1)[-1].split('.')[0])] += p
ksum = sum(r[0] for r in kern)
print(f"workers' samples: {total}: user {100 * (total - ksum) / total:.1f} %, kernel {100 * ksum / total:.1f} %")
print("user, by group:")
for g, p in by.most_common(10):
    print(f"  {100 * p / total:5.1f} %  {g}")
print("top functions:")
for f, p in funcs.most_common(10):
    print(f"  {100 * p / total:5.1f} %  {f}")
print("top kernel symbols:")
for p, _, s in sorted(kern, reverse=True)[:10]:
    print(f"  {100 * p / total:5.1f} %  {s}")
PY
