# shellcheck shell=bash
# Helpers the benchmark scripts (scripts/bench, bench-server) share;
# sourced, not run. start_server and stop_server use the caller's
# $bin (the skiff binary) and keep the server in server_pid.

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

# start_server DATA-DIR LOG [ARG...]: starts `$bin server --disable-agent`
# on free ports (the controller-manager's and scheduler's too, so that it
# runs beside a node), with its admin kubeconfig in DATA-DIR and the extra
# arguments, and waits up to 120 s for /readyz. Sets server_pid, and
# ready_s to the seconds from exec to /readyz ok.
start_server() {
	local dir=$1 slog=$2 t0 i
	shift 2
	local -a args=(server --disable-agent --config "" --data-dir "$dir" --https-listen-port "$(free_port)"
		--write-kubeconfig "$dir/kubeconfig.yaml"
		--kube-controller-manager-arg="secure-port=$(free_port)" --kube-scheduler-arg="secure-port=$(free_port)" "$@")
	rm -f "$dir/kubeconfig.yaml"
	t0=$(now)
	# shellcheck disable=SC2154 # bin is the caller's
	"$bin" "${args[@]}" >>"$slog" 2>&1 &
	server_pid=$!
	for ((i = 0; ; i++)); do
		kill -0 "$server_pid" 2>/dev/null || { server_pid=; echo "${0##*/}: skiff server exited; see $slog" >&2; tail -20 "$slog" >&2; exit 1; }
		if [[ -s $dir/kubeconfig.yaml ]] && [[ $("$bin" kubectl --kubeconfig "$dir/kubeconfig.yaml" get --raw /readyz 2>/dev/null) == ok ]]; then
			break
		fi
		((i < 600)) || { echo "${0##*/}: skiff server not ready after 120s; see $slog" >&2; exit 1; }
		sleep 0.2
	done
	# shellcheck disable=SC2034 # read by the caller
	ready_s=$(since "$t0")
}

# stop_server: SIGTERM to the server start_server started; waits for it.
stop_server() {
	[[ -n ${server_pid:-} ]] || return 0
	kill -TERM "$server_pid" 2>/dev/null || true
	wait "$server_pid" 2>/dev/null || true
	server_pid=
}
