# shellcheck shell=bash
# Helpers the benchmark scripts (scripts/bench, bench-node, bench-server)
# share; sourced, not run.

# now: the time in epoch seconds with nanoseconds.
now() { date +%s.%N; }

# since T0: seconds elapsed since T0 (a value of now), three decimals.
since() { awk -v a="$(now)" -v b="$1" 'BEGIN {printf "%.3f\n", a - b}'; }

# free_port: a TCP port nothing listens on.
free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 20000))
		[[ -z $(ss -Hltn "sport = :$p" 2>/dev/null) ]] && { echo "$p"; return; }
	done
}
