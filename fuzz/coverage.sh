#!/bin/sh
# fuzz/coverage.sh [TARGET...]: source coverage reached by each target's corpus
# (the seeds in fuzz/corpus/<target> and what fuzzing found in fuzz/out/corpus/<target>).
#
# Builds every target once more with clang's source-based coverage
# (-fprofile-instr-generate -fcoverage-mapping, no sanitizers) into fuzz/out/cov,
# runs each over its corpus once (-runs=0) and prints llvm-cov's per-file table
# (regions, functions, lines, branches) for the files of src/ the target reaches,
# then the same for all targets together. Needs llvm-cov and llvm-profdata
# (Debian: llvm-14); not part of `make fuzz`, used for fuzz/README.md's numbers.
set -eu
cd "$(dirname "$0")/.."

OUT=fuzz/out/cov
CC=${CC:-clang}
PROFDATA=${LLVM_PROFDATA:-llvm-profdata}
COV=${LLVM_COV:-llvm-cov}
ALL="command params auth data config spool_read spool_roundtrip session"
TARGETS=${*:-$ALL}
CFLAGS="-std=c17 -O1 -g -fprofile-instr-generate -fcoverage-mapping -D_GNU_SOURCE \
-DMAILGATE_VERSION=\"cov\" -Isrc"
PKGS="libevent_core libevent_pthreads libevent_openssl openssl libconfig jansson libunbound"

mkdir -p "$OUT/obj"
# the library's sources, as meson.build lists them
SRCS=$(sed -n '/^core_src = files(/,/^)/p' meson.build | grep -o "src/[a-z_0-9]*\.c")
objs=""
for s in $SRCS; do
	o="$OUT/obj/$(basename "$s" .c).o"
	if [ ! -f "$o" ] || [ "$s" -nt "$o" ]; then
		# shellcheck disable=SC2046,SC2086
		$CC $CFLAGS -fsanitize=fuzzer-no-link $(pkg-config --cflags $PKGS) -c "$s" -o "$o"
	fi
	objs="$objs $o"
done
rm -f "$OUT/libcore.a"
# shellcheck disable=SC2086
ar rcs "$OUT/libcore.a" $objs

for t in $TARGETS; do
	# shellcheck disable=SC2046,SC2086
	$CC $CFLAGS -fsanitize=fuzzer "fuzz/fuzz_$t.c" "$OUT/libcore.a" \
		$(pkg-config --libs $PKGS) -lcrypt -lpthread -ldl -o "$OUT/fuzz_$t"
	rm -f "$OUT/$t.profraw"
	mkdir -p "fuzz/out/corpus/$t"
	LLVM_PROFILE_FILE="$OUT/$t.profraw" "$OUT/fuzz_$t" -runs=0 "fuzz/corpus/$t" \
		"fuzz/out/corpus/$t" >"$OUT/$t.log" 2>&1
	"$PROFDATA" merge -sparse "$OUT/$t.profraw" -o "$OUT/$t.profdata"
	echo "== fuzz_$t: $(find "fuzz/corpus/$t" "fuzz/out/corpus/$t" -type f | wc -l) inputs"
	"$COV" report "$OUT/fuzz_$t" -instr-profile="$OUT/$t.profdata" \
		-ignore-filename-regex='fuzz/' | awk '$1 ~ /\.c$/ && $3 != $2 { print "  " $0 }'
	profs="${profs:-} $OUT/$t.profdata"
	bins="${bins:-} -object $OUT/fuzz_$t"
done

# the union: every file of src/ as all the targets together cover it
# shellcheck disable=SC2086
"$PROFDATA" merge -sparse $profs -o "$OUT/all.profdata"
echo "== all targets together"
# shellcheck disable=SC2086
"$COV" report $bins -instr-profile="$OUT/all.profdata" -ignore-filename-regex='fuzz/' |
	awk 'NR == 1 || $1 ~ /\.c$/ && $3 != $2 || /^TOTAL/ { print "  " $0 }'
