#!/usr/bin/env bash
# kakuri benchmark: kakuri next to the `tar | zstd -T0 -3 | age` pipeline,
# on the same synthetic input, in the same run.
#
#   bench/run.sh [COUNT] [IMAGE_SIZE] [WORKDIR]
#   bench/run.sh 100000 65536 /var/tmp/kakuri-bench     # throughput
#   COLD=1 bench/run.sh 1711756 4096 /var/tmp/kakuri-bench-full # the real record count
#
# COLD=1 drops the page cache (needs root) before every timed step, so both
# sides read from disk (every timed step starts 50 ms after
# the drop; see cold_start): use it when input + vault + baseline archive do not
# fit in RAM, or the order of the runs decides who gets a warm cache.
#
# Needs: a release build (built here), age, zstd, GNU tar, /usr/bin/time.
# Without COLD=1 the page cache is warm for both sides: before each timed
# pack, verify and decrypt the files it reads are read once. Prints a table: operation, kakuri, baseline, ratio, peak RSS.
# Lookups are timed for `kakuri lookup` and for `kakuri-lookup` (the same
# lookup from a binary that holds only the read path), taking turns. As
# root it also times them with the page cache dropped before each one
# (here and, for other counts, on a 10,000-record vault of the same
# images), and /bin/true and both binaries' --version the same way: the
# floor.
set -euo pipefail
COUNT=${1:-100000}
SIZE=${2:-65536}
WORK=${3:-/var/tmp/kakuri-bench}
LOOKUPS=${LOOKUPS:-21}
COLD_LOOKUPS=${COLD_LOOKUPS:-21}
COLD=${COLD:-0}
MATCHES=${MATCHES:-100000}
cd "$(dirname "$0")/.."
# The release binaries, wherever cargo puts them (CARGO_TARGET_DIR,
# --target): kakuri, and kakuri-lookup (the same lookup in a binary that holds
# only the read path).
BINS=$(cargo build --release --quiet --message-format=json | python3 -c '
import json, sys
exe = {m["target"]["name"]: m["executable"] for m in map(json.loads, sys.stdin)
       if m.get("executable")}
print(exe["kakuri"], exe["kakuri-lookup"])')
read -r K KL <<<"$BINS"
for t in age age-keygen zstd tar /usr/bin/time; do
  command -v "$t" >/dev/null || { echo "bench: $t is required" >&2; exit 2; }
done
rm -rf "$WORK"; mkdir -p "$WORK"; cd "$WORK"
umask 077

# cold_start: drop the page cache, then wait 50 ms before the timed
# process starts. Right after the drop, the machine's other processes
# fault their own pages back in and compete for the disk and both cores:
# /bin/true measured 4.24 ms p50 straight after the drop and 2.31 ms 50 ms
# later (41 each, taking turns). The floor below is measured the same way.
# `cold_start 1` drops the page cache only and keeps the kernel's cached
# directory entries and inodes (echo 1 instead of 3): the file-system
# metadata a lookup needs is then in memory, as on a server where the
# vault's data has been evicted but its few files' inodes have not.
cold_start() { sync; echo "${1:-3}" > /proc/sys/vm/drop_caches; sleep 0.05; }
drop() { if [ "$COLD" = 1 ]; then cold_start; fi; }
# warm PATH...: without COLD=1, read what the next timed step reads, so
# that "warm" means warm for both sides (input, vault and baseline archive
# together can exceed the page cache, and then whichever side ran second
# would find the other's files cached).
warm() { if [ "$COLD" != 1 ]; then find "$@" -type f -exec cat {} + > /dev/null; fi; }
# run NAME CMD...: wall seconds and peak RSS (KiB) of the largest process
run() {
  local name=$1; shift
  drop
  /usr/bin/time -f "%e %M" -o "$WORK/.time" "$@" >"$WORK/.out" 2>"$WORK/.err" || {
    echo "bench: $name failed:" >&2; cat "$WORK/.err" >&2; exit 1; }
  read -r WALL RSS <"$WORK/.time"
}

echo "# generating $COUNT records of ~$SIZE bytes in $WORK/input" >&2
run synth "$K" synth --count "$COUNT" --image-size "$SIZE" --seed 7 --out input
BYTES=$(du -sb input | cut -f1)
"$K" keygen --identity custodian.key --signing-key operator >/dev/null
RECIP=$(grep -o 'age1[0-9a-z]*' custodian.key | head -1)
echo "$RECIP bench-custodian" > recipients.txt
RETAIN=$(date -d '+365 days' +%F)

# --- pack
warm input
run kakuri-pack "$K" pack input --recipients recipients.txt --sign-key operator --retain-until "$RETAIN" --out vault
PACK_K=$WALL; PACK_K_RSS=$RSS
warm input
# The archive is synced at the end (coreutils `sync FILE` is an fsync), as
# kakuri syncs every file it writes: both sides pay for durability.
run baseline-pack bash -c "tar -cf - -C input . | zstd -q -T0 -3 | age -r $RECIP > baseline.tar.zst.age && sync baseline.tar.zst.age"
PACK_B=$WALL; PACK_B_RSS=$RSS
# kakuri without recovery data (the pipeline writes none): the same work
# as the pipeline plus hashing, indexing and signing, and no more.
warm input
run kakuri-pack-noparity "$K" pack input --recipients recipients.txt --sign-key operator --retain-until "$RETAIN" --out vault-np --parity none
PACK_NP=$WALL; PACK_NP_RSS=$RSS
rm -rf vault-np

# --- one-record lookup (whole process, p50 of $LOOKUPS runs, distinct records)
CAN_DROP=0
if sync && echo 3 > /proc/sys/vm/drop_caches 2>/dev/null; then CAN_DROP=1; fi
p50() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# Lookups write their stderr to .err through descriptor 9, opened here
# once: a `2>.err` on each command would open and truncate that file
# inside the timed interval (with the page cache dropped, a directory and
# inode read of the work directory: about 1 ms here).
: > .err
exec 9>>.err
ms() { printf '%.1f' "$(echo "$1*1000" | bc -l)"; }
# lookup BIN VAULT RECORD: one lookup process, with `kakuri lookup` (BIN
# kakuri) or `kakuri-lookup`.
lookup() {
  local bin=$1; shift
  if [ "$bin" = kakuri ]; then set -- "$K" lookup "$@"; else set -- "$KL" "$@"; fi
  "$@" -i custodian.key --sign-key operator --case BENCH --reason benchmark >/dev/null 2>&9 || { cat .err >&2; exit 1; }
}
# lookups VAULT RECORDS N cold|cold1|warm: p50 wall seconds of N lookup
# processes of distinct records, for `kakuri lookup` and for `kakuri-lookup`
# (printed in that order), taking turns so that both meet the same machine;
# "cold" drops the page cache and the cached directory entries and inodes
# before each one, so the process reads its binary, keys, vault files and
# their directories and inodes from disk; "cold1" drops the page cache only.
lookups() {
  local vault=$1 count=$2 n=$3 mode=$4 i rid s e bin
  local -a tk=() tl=()
  for i in $(seq 1 "$n"); do
    for bin in kakuri kakuri-lookup; do
      if [ "$mode" = cold ] || [ "$mode" = cold1 ]; then
        rid=$(printf 'rec-%08d' $(( (i * 104729 * 7 + ${#bin}) % count )))
        if [ "$mode" = cold1 ]; then cold_start 1; else cold_start 3; fi
      else
        rid=$(printf 'rec-%08d' $(( (i * 7919 * 104729 + ${#bin}) % count )))
      fi
      s=$EPOCHREALTIME
      lookup "$bin" "$vault" --record-id "$rid"
      e=$EPOCHREALTIME
      if [ "$bin" = kakuri ]; then tk+=("$(echo "$e - $s" | bc -l)"); else tl+=("$(echo "$e - $s" | bc -l)"); fi
    done
  done
  echo "$(printf '%s\n' "${tk[@]}" | p50) $(printf '%s\n' "${tl[@]}" | p50)"
}
# cold: what a process costs before it does anything (the floor of the cold figure)
cold_exec() {
  local i s e
  local -a t=()
  for i in $(seq 1 11); do
    cold_start
    s=$EPOCHREALTIME; "$@" >/dev/null; e=$EPOCHREALTIME
    t+=("$(echo "$e - $s" | bc -l)")
  done
  printf '%s\n' "${t[@]}" | p50
}
read -r LOOK_K LOOK_L <<<"$(lookups vault "$COUNT" "$LOOKUPS" warm)"
if [ "$CAN_DROP" = 1 ]; then
  read -r LOOK_K_COLD LOOK_L_COLD <<<"$(lookups vault "$COUNT" "$COLD_LOOKUPS" cold)"
  LOOK_K_COLD=$(ms "$LOOK_K_COLD"); LOOK_L_COLD=$(ms "$LOOK_L_COLD")
  read -r LOOK_K_COLD1 LOOK_L_COLD1 <<<"$(lookups vault "$COUNT" "$COLD_LOOKUPS" cold1)"
  LOOK_K_COLD1=$(ms "$LOOK_K_COLD1"); LOOK_L_COLD1=$(ms "$LOOK_L_COLD1")
  TRUE_COLD=$(ms "$(cold_exec /bin/true)")
  VERSION_COLD=$(ms "$(cold_exec "$K" --version)")
  VERSION_L_COLD=$(ms "$(cold_exec "$KL" --version)")
  # The same lookups on a 10,000-record vault of the same images: the
  # cold figure should not grow with the vault.
  if [ "$COUNT" != 10000 ]; then
    "$K" synth --count 10000 --image-size "$SIZE" --seed 7 --out input10k >/dev/null
    "$K" pack input10k --recipients recipients.txt --sign-key operator --retain-until "$RETAIN" --out vault10k >/dev/null
    read -r SMALL_COLD SMALL_L_COLD <<<"$(lookups vault10k 10000 "$COLD_LOOKUPS" cold)"
    SMALL_COLD=$(ms "$SMALL_COLD"); SMALL_L_COLD=$(ms "$SMALL_L_COLD")
    read -r SMALL_WARM SMALL_L_WARM <<<"$(lookups vault10k 10000 "$LOOKUPS" warm)"
    SMALL_WARM=$(ms "$SMALL_WARM"); SMALL_L_WARM=$(ms "$SMALL_L_WARM")
    rm -rf input10k vault10k
  fi
else
  echo "bench: cannot drop the page cache (not root): no cold lookup figures" >&2
  LOOK_K_COLD=n/a; LOOK_L_COLD=n/a; LOOK_K_COLD1=n/a; LOOK_L_COLD1=n/a; TRUE_COLD=n/a; VERSION_COLD=n/a; VERSION_L_COLD=n/a
fi
run kakuri-lookup "$K" lookup vault -i custodian.key --sign-key operator --case BENCH --reason benchmark --record-id rec-00000000
LK_RSS=$RSS
run kakuri-lookup-only "$KL" vault -i custodian.key --sign-key operator --case BENCH --reason benchmark --record-id rec-00000001
LL_RSS=$RSS
run kakuri-export "$K" export vault -i custodian.key --sign-key operator --case BENCH --reason benchmark --record-id "rec-$(printf '%08d' $((COUNT / 3)))" --out export1
EXP_K_RSS=$RSS
rm -rf export1
# its time as a fresh process on a warm cache (/usr/bin/time shows 10 ms steps)
s=$EPOCHREALTIME
"$K" export vault -i custodian.key --sign-key operator --case BENCH --reason benchmark --record-id "rec-$(printf '%08d' $((COUNT / 3 + 1)))" --out export1 >/dev/null
e=$EPOCHREALTIME
EXP_K=$(ms "$(echo "$e - $s" | bc -l)")
rm -rf export1
# baseline: the pipeline has no index; finding one record means a full scan
TARGET=$(python3 -c "import json,sys
for l in open('input/records.jsonl'):
    o=json.loads(l)
    if o['record_id']=='rec-%08d' % ($COUNT//2): print(o['image']); break")
run baseline-lookup bash -c "age -d -i custodian.key baseline.tar.zst.age | zstd -q -d | tar -xOf - './$TARGET' > /dev/null"
LOOK_B=$WALL; LOOK_B_RSS=$RSS

# --- batch match: $MATCHES document numbers, 90% of them in the vault
python3 - "$COUNT" "$MATCHES" > queries.csv <<'PY'
import json, random, sys
count, want = int(sys.argv[1]), int(sys.argv[2])
random.seed(11)
pick = set(random.sample(range(count), min(count, want * 9 // 10)))
print("document_number")
n = 0
for i, line in enumerate(open("input/records.jsonl")):
    if i in pick:
        print(json.loads(line)["document_number"]); n += 1
for j in range(want - n):
    print("ZZ%010d" % j)
PY
run kakuri-match "$K" match vault -i custodian.key --sign-key operator --case BENCH --reason benchmark --table queries.csv --column document_number --field document_number --out hits.jsonl
MATCH_K=$WALL; MATCH_K_RSS=$RSS; MATCH_HITS=$(wc -l < hits.jsonl)

# --- deep verify vs decrypt+decompress of the same shards
warm vault/shards vault/index
run kakuri-verify "$K" verify vault --deep -i custodian.key --sign-key operator
VER_K=$WALL; VER_K_RSS=$RSS
mkdir -p /dev/shm/kakuri-bench.$$ && VK=/dev/shm/kakuri-bench.$$/vault.key
age -d -i custodian.key vault/custody/g1-vault-key.age > "$VK"
warm vault/shards
run baseline-decrypt bash -c "for s in vault/shards/*.tar.zst.age; do age -d -i $VK \$s | zstd -q -d > /dev/null; done"
VER_B=$WALL; VER_B_RSS=$RSS
rm -rf /dev/shm/kakuri-bench.$$

VAULT_BYTES=$(du -sb vault | cut -f1)
mb() { echo "scale=1; $BYTES / 1000000 / $1" | bc -l; }
ratio() { echo "scale=2; $1 / $2" | bc -l; }
cat <<T

kakuri benchmark: $COUNT records, $BYTES input bytes (~$SIZE B/image), $(nproc) cores, $(date -u +%F), COLD=$COLD
| operation | kakuri | baseline (tar/zstd/age) | ratio (baseline/kakuri time) | kakuri peak RSS | baseline peak RSS |
|---|---|---|---|---|---|
| pack | ${PACK_K} s ($(mb "$PACK_K") MB/s) | ${PACK_B} s ($(mb "$PACK_B") MB/s) | $(ratio "$PACK_B" "$PACK_K")x | $((PACK_K_RSS/1024)) MiB | $((PACK_B_RSS/1024)) MiB |
| pack --parity none (no recovery data, as the pipeline) | ${PACK_NP} s ($(mb "$PACK_NP") MB/s) | ${PACK_B} s | $(ratio "$PACK_B" "$PACK_NP")x | $((PACK_NP_RSS/1024)) MiB | |
| one-record lookup, kakuri lookup (p50 of $LOOKUPS, whole process, warm cache) | $(ms "$LOOK_K") ms | ${LOOK_B} s (full scan) | $(ratio "$LOOK_B" "$LOOK_K")x | $((LK_RSS/1024)) MiB | $((LOOK_B_RSS/1024)) MiB |
| one-record lookup, kakuri-lookup (p50 of $LOOKUPS, whole process, warm cache) | $(ms "$LOOK_L") ms | | | $((LL_RSS/1024)) MiB | |
| one-record lookup, kakuri lookup (p50 of $COLD_LOOKUPS, whole process, page cache and cached inodes dropped) | ${LOOK_K_COLD} ms | | | | |
| one-record lookup, kakuri-lookup (p50 of $COLD_LOOKUPS, whole process, page cache and cached inodes dropped) | ${LOOK_L_COLD} ms | | | | |
| one-record lookup, kakuri lookup / kakuri-lookup (p50 of $COLD_LOOKUPS, page cache dropped, directory entries and inodes kept) | ${LOOK_K_COLD1} / ${LOOK_L_COLD1} ms | | | | |
| export one record with its receipt (whole process, warm cache) | ${EXP_K} ms | (a full scan, as lookup) | | $((EXP_K_RSS/1024)) MiB | |
| match: $MATCHES document numbers ($MATCH_HITS hits) | ${MATCH_K} s | (no index: a full scan per batch) | | $((MATCH_K_RSS/1024)) MiB | |
| deep verify / decrypt+decompress all shards | ${VER_K} s ($(mb "$VER_K") MB/s) | ${VER_B} s ($(mb "$VER_B") MB/s) | $(ratio "$VER_B" "$VER_K")x | $((VER_K_RSS/1024)) MiB | $((VER_B_RSS/1024)) MiB |

vault size: $VAULT_BYTES bytes ($(ratio "$VAULT_BYTES" "$BYTES")x input); baseline archive: $(stat -c %s baseline.tar.zst.age) bytes
cold (page cache and cached inodes dropped), p50 of 11 processes: /bin/true ${TRUE_COLD} ms, kakuri --version ${VERSION_COLD} ms ($(stat -c %s "$K") bytes), kakuri-lookup --version ${VERSION_L_COLD} ms ($(stat -c %s "$KL") bytes)
T
if [ -n "${SMALL_COLD:-}" ]; then
  echo "10,000-record vault, same images, cold (as above) / warm: kakuri lookup p50 ${SMALL_COLD} / ${SMALL_WARM} ms, kakuri-lookup ${SMALL_L_COLD} / ${SMALL_L_WARM} ms; at $COUNT records ${LOOK_K_COLD} ms ($(ratio "$LOOK_K_COLD" "$SMALL_COLD")x) and ${LOOK_L_COLD} ms ($(ratio "$LOOK_L_COLD" "$SMALL_L_COLD")x)"
fi
