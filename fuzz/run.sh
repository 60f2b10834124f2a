#!/bin/sh
# fuzz/run.sh SECONDS [TARGET...]   run each libFuzzer target for SECONDS
# fuzz/run.sh --merge [TARGET...]   merge what fuzz/out/corpus found into fuzz/corpus
#
# Called by `make fuzz` / `make fuzz-smoke` / `make fuzz-merge` once build-fuzz
# is built (fuzz/README.md). One target at a time, one process each (the
# machine is shared). Seeds come from fuzz/corpus/<target> (read only); new
# inputs go to fuzz/out/corpus/<target>, crash, leak and timeout inputs to
# fuzz/out/artifacts/, logs to fuzz/out/logs/. Exits 1 if any target found
# anything (crash, leak, sanitizer report, timeout, out of memory).
set -u
cd "$(dirname "$0")/.."

BIN=${FUZZ_BUILD:-build-fuzz}/fuzz
OUT=fuzz/out
ALL="command params auth data config spool_read spool_roundtrip session client_reply"

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export LSAN_OPTIONS="suppressions=$(pwd)/fuzz/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"

# per-target libFuzzer flags: dictionary, input size
flags() {
	case $1 in
	command|params) echo "-dict=fuzz/dict/smtp.dict -max_len=1024" ;;
	session) echo "-dict=fuzz/dict/smtp.dict -max_len=8192" ;;
	config) echo "-dict=fuzz/dict/config.dict -max_len=8192" ;;
	data) echo "-max_len=16384" ;;
	client_reply) echo "-max_len=8192" ;;
	*) echo "-max_len=4096" ;;
	esac
}

merge=false
if [ "${1:-}" = "--merge" ]; then
	merge=true
	shift
else
	SECONDS_EACH=${1:-60}
	[ $# -gt 0 ] && shift
fi
TARGETS=${*:-$ALL}

mkdir -p "$OUT/artifacts" "$OUT/logs"
failed=""
summary=""
for t in $TARGETS; do
	if [ ! -x "$BIN/fuzz_$t" ]; then
		echo "fuzz: $BIN/fuzz_$t not built (make fuzz builds it)" >&2
		exit 2
	fi
	mkdir -p "$OUT/corpus/$t"
	log="$OUT/logs/$t.log"
	if $merge; then
		echo "fuzz: merging $OUT/corpus/$t into fuzz/corpus/$t"
		# shellcheck disable=SC2046
		"$BIN/fuzz_$t" -merge=1 $(flags "$t") "fuzz/corpus/$t" "$OUT/corpus/$t" >"$log" 2>&1 ||
			failed="$failed $t"
		continue
	fi
	echo "fuzz: $t for ${SECONDS_EACH}s"
	# CPU seconds (user + system) when /usr/bin/time is there, for fuzz/README.md
	timer=""
	[ -x /usr/bin/time ] && timer="/usr/bin/time -f %U+%S -o $OUT/logs/$t.cpu"
	# shellcheck disable=SC2046,SC2086
	$timer "$BIN/fuzz_$t" -max_total_time="$SECONDS_EACH" -timeout=25 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix="$OUT/artifacts/$t-" $(flags "$t") \
		"$OUT/corpus/$t" "fuzz/corpus/$t" >"$log" 2>&1
	rc=$?
	last=$(grep -E '^#[0-9]+' "$log" | tail -1)
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
	cpu=""
	[ -s "$OUT/logs/$t.cpu" ] && cpu=$(tail -1 "$OUT/logs/$t.cpu")
	summary="$summary
  $t: ${last:-no stats}${runs:+ runs: $runs}${cpu:+ cpu_s: $cpu}"
	if [ $rc -ne 0 ]; then
		failed="$failed $t"
		echo "fuzz: $t FAILED (exit $rc), log $log:" >&2
		grep -E 'ERROR|SUMMARY|property failed|runtime error|Test unit written' "$log" >&2
	fi
done

if ! $merge; then
	echo "fuzz: final stats$summary"
fi
if [ -n "$failed" ]; then
	echo "fuzz: FAILED:$failed (inputs in $OUT/artifacts/, logs in $OUT/logs/)" >&2
	exit 1
fi
echo "fuzz: ok"
