#!/bin/bash
# test-all.sh — every build and test relayd must pass before it ships.
#
# Stages, each in its own out-of-tree build directory under _build/:
#   gcc       gcc 12, -Werror (configure's default), make check
#   clang     CC=clang (14), -Werror, make check of the unit suite (the
#             integration suite already runs against the gcc and the
#             sanitizer builds; what clang adds is its warnings)
#   san       --enable-sanitizers (ASan + UBSan, leak checks on), make check
#   distcheck make distcheck from the gcc build: the tarball builds, its unit
#             suite passes, it installs and uninstalls cleanly
#   fuzz      CC=clang --enable-fuzzing in _build/fuzz, then tests/fuzz/run:
#             every libFuzzer target (ASan + UBSan) for $RELAYD_FUZZ_SECONDS
#             (default 30) seconds from its seed corpus; a crash, leak,
#             timeout or violated property fails it, the input kept in
#             _build/fuzz/fuzz-out/crashes/<target>/
# and, first, the man pages must pass groff -ww without a warning.
# automake's test harness hides test output in .log files, so after each
# check this prints the Check summary and the integration runner's
# "N passed, N failed"; when something fails it prints the failing logs.
# The last two lines are those two summaries added up over the three builds.
# Exit status: 0 only if every stage passed.
#
# Usage: tools/test-all.sh        (as root on Debian 12: deps.sh installs)
# Environment: RELAYD_STAGES="gcc clang san distcheck fuzz"  run only these
#              RELAYD_JOBS=N                             make -jN (default nproc)
#              RELAYD_TEST_JOBS=N                        integration tests at a time
#                                                        (default 4: most of their time
#                                                        is spent waiting on timers)
#              RELAYD_FUZZ_SECONDS=N                     per fuzz target (default 30)
set -u

top=$(cd "$(dirname "$0")/.." && pwd) || exit 1
cd "$top" || exit 1
STAGES=${RELAYD_STAGES:-gcc clang san distcheck fuzz}
JOBS=${RELAYD_JOBS:-$(nproc 2>/dev/null || echo 2)}
# No byte-code next to the sources (the tree may be read-only in distcheck).
export PYTHONDONTWRITEBYTECODE=1
# The integration runner takes it (tests marked serial still run alone).
export RELAYD_TEST_JOBS=${RELAYD_TEST_JOBS:-4}

t_all=$(date +%s)
failed_stages=()
report=()		# one line per stage, printed again at the end
sum_checks=0 sum_cfail=0 sum_cerr=0
sum_pass=0 sum_fail=0 sum_skip=0

say() { printf '%s\n' "$*"; }
since() { echo $(( $(date +%s) - $1 )); }

# Print a file, but not an endless one.
show() {
	local f=$1 max=${2:-300} n
	[ -f "$f" ] || { say "($f: missing)"; return; }
	n=$(wc -l <"$f")
	say "---- $f ($n lines) ----"
	if [ "$n" -gt "$max" ]; then
		say "(first $(( max / 3 )) and last $(( max * 2 / 3 )) lines)"
		head -n $(( max / 3 )) "$f"
		say "[...]"
		tail -n $(( max * 2 / 3 )) "$f"
	else
		cat "$f"
	fi
	say "---- end of $f ----"
}

# Remove a build directory, including a distcheck tree left read-only.
wipe() {
	[ -e "$1" ] || return 0
	chmod -R u+w "$1" 2>/dev/null
	rm -rf "$1"
}

# Summaries of one build's test logs; adds them to the totals.
summarize() {
	local name=$1 dir=$2 unit integ line p f s
	unit=$(grep -E '^[0-9]+%: Checks: [0-9]+, Failures: [0-9]+, Errors: [0-9]+' \
		"$dir/tests/unit/check_relayd.log" 2>/dev/null | tail -n 1)
	if [ -n "$unit" ]; then
		say "$name unit:        $unit"
		line=${unit#*Checks: }
		sum_checks=$(( sum_checks + ${line%%,*} ))
		line=${unit#*Failures: }
		sum_cfail=$(( sum_cfail + ${line%%,*} ))
		sum_cerr=$(( sum_cerr + ${unit##*Errors: } ))
	else
		say "$name unit:        (no Check summary in tests/unit/check_relayd.log)"
	fi
	if [ -f "$dir/tests/integration/run.log" ]; then
		say "$name integration: last lines of tests/integration/run.log:"
		grep -v '^[[:space:]]*$' "$dir/tests/integration/run.log" | tail -n 5 | sed 's/^/    /'
	fi
	integ=$(grep -E '^([A-Za-z]+: )?[0-9]+ passed, [0-9]+ failed' \
		"$dir/tests/integration/run.log" 2>/dev/null | tail -n 1)
	if [ -n "$integ" ]; then
		p=${integ%% passed*}; p=${p##* }
		f=${integ#*passed, }; f=${f%% failed*}
		s=0
		case $integ in *skipped*) s=${integ#*failed, }; s=${s%% skipped*} ;; esac
		sum_pass=$(( sum_pass + p )); sum_fail=$(( sum_fail + f )); sum_skip=$(( sum_skip + s ))
	else
		say "$name integration: (no \"N passed, N failed\" line in tests/integration/run.log)"
	fi
}

# Keeps CI well under its 20 minutes: the stages that repeat a suite already
# run elsewhere run only the unit suite.
UNIT_ONLY="TESTS=tests/unit/check_relayd"

# run_build NAME [VAR=VALUE...] -- CONFIGURE-ARGS...
# VAR=VALUE pairs are exported to configure, make and make check.
# CHECK_ARGS (if set) are passed to make check.
run_build() {
	local name=$1 dir="$top/_build/$1" t rc
	shift
	local envs=()
	while [ $# -gt 0 ] && [ "$1" != -- ]; do envs+=("$1"); shift; done
	[ $# -gt 0 ] && shift
	say ""
	say "== $name: configure $* ${envs[*]}"
	t=$(date +%s)
	wipe "$dir"
	mkdir -p "$dir"
	if ! (cd "$dir" && env "${envs[@]}" ../../configure "$@") >"$dir/configure.out" 2>&1; then
		say "$name: configure FAILED"
		tail -n 30 "$dir/configure.out"
		failed_stages+=("$name"); report+=("$name: FAILED at configure")
		return 1
	fi
	if ! (cd "$dir" && env "${envs[@]}" make -j"$JOBS") >"$dir/build.out" 2>&1; then
		say "$name: build FAILED"
		grep -E 'error|warning' "$dir/build.out" | head -n 40
		tail -n 30 "$dir/build.out"
		failed_stages+=("$name"); report+=("$name: FAILED at build")
		return 1
	fi
	say "$name: built in $(since "$t")s; make check ..."
	(cd "$dir" && env "${envs[@]}" make check ${CHECK_ARGS:-}) >"$dir/check.out" 2>&1
	rc=$?
	summarize "$name" "$dir"
	if [ $rc -ne 0 ]; then
		say "$name: make check FAILED (exit $rc)"
		grep -E '^(PASS|FAIL|XFAIL|XPASS|SKIP|ERROR):' "$dir/check.out"
		show "$dir/test-suite.log"
		[ -f "$dir/test-suite.log" ] || tail -n 40 "$dir/check.out"
		failed_stages+=("$name"); report+=("$name: FAILED at make check ($(since "$t")s)")
		return 1
	fi
	report+=("$name: ok ($(since "$t")s)")
	say "$name: ok ($(since "$t")s)"
}

run_distcheck() {
	local dir="$top/_build/gcc" t sub
	say ""
	say "== distcheck (in _build/gcc)"
	t=$(date +%s)
	if [ ! -f "$dir/Makefile" ]; then
		say "distcheck: no configured gcc build to run it from"
		failed_stages+=(distcheck); report+=("distcheck: not run (no gcc build)")
		return 1
	fi
	if ! (cd "$dir" && make distcheck "$UNIT_ONLY") >"$dir/distcheck.out" 2>&1; then
		say "distcheck: FAILED"
		tail -n 60 "$dir/distcheck.out"
		for sub in "$dir"/relayd-*/_build/sub/test-suite.log; do
			[ -f "$sub" ] && show "$sub"
		done
		failed_stages+=(distcheck); report+=("distcheck: FAILED ($(since "$t")s)")
		return 1
	fi
	grep -E 'archives ready for distribution|^relayd-.*\.tar' "$dir/distcheck.out" | head -n 3
	report+=("distcheck: ok ($(since "$t")s)")
	say "distcheck: ok ($(since "$t")s)"
}

# The fuzz targets, one after the other, each for a bounded time (13
# targets at 30 s: about 7 minutes with the build).  Alone, after the
# other stages: the fuzzers use every core they are given.
run_fuzz() {
	local dir="$top/_build/fuzz" t secs=${RELAYD_FUZZ_SECONDS:-30}
	say ""
	say "== fuzz: configure CC=clang --enable-fuzzing; tests/fuzz/run ${secs}s a target"
	t=$(date +%s)
	wipe "$dir"
	mkdir -p "$dir"
	if ! (cd "$dir" && ../../configure CC=clang --enable-fuzzing) >"$dir/configure.out" 2>&1; then
		say "fuzz: configure FAILED"
		tail -n 30 "$dir/configure.out"
		failed_stages+=(fuzz); report+=("fuzz: FAILED at configure")
		return 1
	fi
	if ! FUZZ_JOBS=$JOBS "$top/tests/fuzz/run" -b "$dir" "$secs" >"$dir/fuzz.out" 2>&1; then
		cat "$dir/fuzz.out"
		say "fuzz: FAILED ($(since "$t")s)"
		failed_stages+=(fuzz); report+=("fuzz: FAILED ($(since "$t")s)")
		return 1
	fi
	cat "$dir/fuzz.out"
	report+=("fuzz: ok ($(since "$t")s)")
	say "fuzz: ok ($(since "$t")s)"
}

# ---- prerequisites -------------------------------------------------------
t=$(date +%s)
say "== deps"
"$top/tools/deps.sh" || exit 1
report+=("deps: ok ($(since "$t")s)")

t=$(date +%s)
say "== autoreconf -fi"
if ! autoreconf -fi >"/tmp/relayd-autoreconf.$$.log" 2>&1; then
	say "autoreconf FAILED"
	cat "/tmp/relayd-autoreconf.$$.log"
	rm -f "/tmp/relayd-autoreconf.$$.log"
	exit 1
fi
rm -f "/tmp/relayd-autoreconf.$$.log"
report+=("autoreconf: ok ($(since "$t")s)")

# The man pages must format without a single groff warning.
t=$(date +%s)
say "== man pages: groff -ww -z -man"
man_bad=0
for page in man/*.[1-8]; do
	out=$(groff -ww -z -man "$page" 2>&1)
	if [ -n "$out" ]; then
		say "$page:"; say "$out"; man_bad=1
	fi
done
if [ $man_bad = 0 ]; then
	report+=("man pages: ok ($(since "$t")s)")
else
	failed_stages+=(man); report+=("man pages: FAILED (groff warnings)")
fi

# ---- the stages ------------------------------------------------------------
for stage in $STAGES; do
	case $stage in
	gcc)	run_build gcc CC=gcc -- ;;
	clang)	CHECK_ARGS=$UNIT_ONLY run_build clang CC=clang -- ;;
	san)	run_build san \
			ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
			UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
			-- --enable-sanitizers ;;
	distcheck)
		if [[ " ${failed_stages[*]} " == *" gcc "* ]]; then
			say ""; say "== distcheck: skipped, the gcc build failed"
			failed_stages+=(distcheck); report+=("distcheck: not run (gcc failed)")
		else
			run_distcheck
		fi ;;
	fuzz)	run_fuzz ;;
	*)	say "unknown stage: $stage"; failed_stages+=("$stage") ;;
	esac
done

# ---- summary ---------------------------------------------------------------
say ""
say "== summary ($(since "$t_all")s in all)"
for line in "${report[@]}"; do say "  $line"; done
if [ ${#failed_stages[@]} -gt 0 ]; then
	say "FAILED: ${failed_stages[*]}"
else
	say "all stages passed"
fi
say "totals over the builds' make check (unit = Check, integration = tests/integration/run):"
pct=0
[ $sum_checks -gt 0 ] && pct=$(( (sum_checks - sum_cfail - sum_cerr) * 100 / sum_checks ))
say "${pct}%: Checks: $sum_checks, Failures: $sum_cfail, Errors: $sum_cerr"
if [ $sum_skip -gt 0 ]; then
	say "integration: $sum_pass passed, $sum_fail failed, $sum_skip skipped"
else
	say "integration: $sum_pass passed, $sum_fail failed"
fi
[ ${#failed_stages[@]} -eq 0 ]
