#!/bin/sh
# Skiff installer.
#
#   curl -sfL https://<host>/install.sh | sh -
#   curl -sfL https://<host>/install.sh | sh -s - [server|agent] [flags...]
#   sh install.sh [server|agent] [flags...]
#
# Installs the skiff binary, the kubectl/crictl/ctr symlinks, a service
# (systemd or OpenRC) and the skiff-killall.sh and <name>-uninstall.sh
# scripts. Every setting comes from an environment variable; see
# docs/install.md for the full list. Re-running upgrades in place.
set -eu

info() { printf '[INFO] %s\n' "$*"; }
fatal() {
	printf '[ERROR] %s\n' "$*" >&2
	exit 1
}

# --- quoting helpers --------------------------------------------------------

# sh_quote WORD: WORD as one sh word (single-quoted when needed).
sh_quote() {
	case $1 in
	'' | *[!A-Za-z0-9_./:=,@+-]*)
		# The "." keeps $(...) from eating the word's trailing newlines.
		_shq=$(printf '%s.' "$1" | sed "s/'/'\\\\''/g")
		printf "'%s'" "${_shq%.}"
		;;
	*) printf '%s' "$1" ;;
	esac
}

# systemd_word WORD: WORD as one word of a systemd ExecStart= line, where
# systemd expands $VAR and %-specifiers and reads C escapes in quotes.
systemd_word() {
	case $1 in
	'' | *[!A-Za-z0-9_./:=,@+-]*)
		# The sed script joins all lines first, so newlines become \n.
		_sdw=$(printf '%s.' "$1" | sed -e ':a' -e '$!N' -e '$!ba' \
			-e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/%/%%/g' -e 's/\$/$$/g' -e 's/\n/\\n/g')
		printf '"%s"' "${_sdw%.}"
		;;
	*) printf '%s' "$1" ;;
	esac
}

# systemd_env_value VALUE: VALUE for a systemd EnvironmentFile= line.
systemd_env_value() {
	case $1 in
	*[!A-Za-z0-9_./:=,@+-]*)
		printf '"%s"' "$(printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g')"
		;;
	*) printf '%s' "$1" ;;
	esac
}

# check_dir VAR VALUE: VALUE must be an absolute path other than /.
check_dir() {
	case $2 in
	/) fatal "$1 must not be /" ;;
	/*) ;;
	*) fatal "$1 must be an absolute path (got '$2')" ;;
	esac
}

# write_file DEST MODE: atomically replace DEST with stdin, mode MODE,
# unless DEST already holds exactly that. Sets FILE_CHANGED to true or
# false; a pipeline runs it in a subshell, so where that matters, feed it
# from a here-document instead.
write_file() {
	_tmp="$1.tmp.$$"
	(umask 077 && cat >"$_tmp") || {
		rm -f "$_tmp"
		fatal "cannot write $1"
	}
	if [ -f "$1" ] && [ ! -L "$1" ] && cmp -s "$_tmp" "$1"; then
		rm -f "$_tmp"
		chmod "$2" "$1" || fatal "cannot chmod $1"
		FILE_CHANGED=false
		return
	fi
	if ! chmod "$2" "$_tmp" || ! mv -f "$_tmp" "$1"; then
		rm -f "$_tmp"
		fatal "cannot install $1"
	fi
	FILE_CHANGED=true
}
FILE_CHANGED=false
# SERVICE_CHANGED: the binary or a file the service reads was replaced, so
# a running service must restart to pick it up.
SERVICE_CHANGED=false
# write_service_file DEST MODE: write_file for a file the service reads.
write_service_file() {
	write_file "$1" "$2"
	[ "$FILE_CHANGED" = false ] || SERVICE_CHANGED=true
}

# --- settings ---------------------------------------------------------------

BIN_DIR=${INSTALL_SKIFF_BIN_DIR:-/usr/local/bin}
SYSTEMD_DIR=${INSTALL_SKIFF_SYSTEMD_DIR:-/etc/systemd/system}
OPENRC_DIR=${INSTALL_SKIFF_OPENRC_DIR:-/etc/init.d}
CONFIG_DIR=${INSTALL_SKIFF_CONFIG_DIR:-/etc/skiff}
DATA_DIR=${INSTALL_SKIFF_DATA_DIR:-/var/lib/skiff}
SYMLINK=${INSTALL_SKIFF_SYMLINK:-}
INIT=${INSTALL_SKIFF_INIT:-auto}
SKIP_START=${INSTALL_SKIFF_SKIP_START:-false}
SKIP_ENABLE=${INSTALL_SKIFF_SKIP_ENABLE:-false}
SKIFF_URL=${SKIFF_URL:-}
SKIFF_TOKEN=${SKIFF_TOKEN:-}

check_dir INSTALL_SKIFF_BIN_DIR "$BIN_DIR"
check_dir INSTALL_SKIFF_SYSTEMD_DIR "$SYSTEMD_DIR"
check_dir INSTALL_SKIFF_OPENRC_DIR "$OPENRC_DIR"
check_dir INSTALL_SKIFF_CONFIG_DIR "$CONFIG_DIR"
check_dir INSTALL_SKIFF_DATA_DIR "$DATA_DIR"

case $SYMLINK in
'' | skip | force) ;;
*) fatal "INSTALL_SKIFF_SYMLINK must be empty, 'skip' or 'force' (got '$SYMLINK')" ;;
esac
for _v in SKIP_START SKIP_ENABLE; do
	eval "_val=\$$_v"
	case $_val in
	true | false | '') ;;
	*) fatal "INSTALL_SKIFF_$_v must be 'true' or 'false' (got '$_val')" ;;
	esac
done

# The command line: INSTALL_SKIFF_EXEC (split on white space) followed by the
# script's own arguments. A leading "server" or "agent" picks the mode.
# The kubelet root dir (--kubelet-arg root-dir=...) and the config file
# (--config) given there are remembered for skiff-killall.sh. Secrets
# (--token, --agent-token, --datastore-endpoint, which may hold a password)
# leave the command line for the service's environment file, mode 0600:
# unit files and init scripts are world-readable, and so is a process's
# command line.
MODE=
ARGS_SYSTEMD=
ARGS_SH=
# OpenRC evals command_args after splitting it on blanks, so each argument
# that is not a plain word goes into a variable of the init script
# (OPENRC_ARG_VARS) and command_args names the variable.
OPENRC_ARGS=
OPENRC_ARG_VARS=
_openrc_vars=0
SECRET_ARGS=
KUBELET_DIR=
CONFIG_ARG=
_first=true
_prev=
_secret_flag=
_secret_var=
# set_secret VAR FLAG VALUE: VALUE of the secret FLAG goes to the service's
# environment as VAR (exported, so env_lines writes it).
set_secret() {
	[ -n "$3" ] || fatal "$2 needs a value"
	eval "$1=\$3"
	export "${1?}"
	case " $SECRET_ARGS " in
	*" $1 "*) ;;
	*) SECRET_ARGS="$SECRET_ARGS $1" ;;
	esac
}
# kubelet_arg VALUE: one --kubelet-arg value.
kubelet_arg() {
	case $1 in
	root-dir=* | --root-dir=*) KUBELET_DIR=${1#*root-dir=} ;;
	esac
}
add_arg() {
	if [ "$_first" = true ]; then
		_first=false
		case $1 in
		server | agent)
			MODE=$1
			return
			;;
		esac
	fi
	if [ -n "$_secret_var" ]; then
		set_secret "$_secret_var" "$_secret_flag" "$1"
		_secret_var=
		return
	fi
	# Go's flag syntax, which skiff's CLI uses: one or two dashes, the value
	# after "=" or as the next argument.
	case $1 in
	--token | -token | --t | -t) _secret_var=SKIFF_TOKEN ;;
	--agent-token | -agent-token) _secret_var=SKIFF_AGENT_TOKEN ;;
	--datastore-endpoint | -datastore-endpoint) _secret_var=SKIFF_DATASTORE_ENDPOINT ;;
	--token=* | -token=* | --t=* | -t=*) set_secret SKIFF_TOKEN "${1%%=*}" "${1#*=}" ;;
	--agent-token=* | -agent-token=*) set_secret SKIFF_AGENT_TOKEN "${1%%=*}" "${1#*=}" ;;
	--datastore-endpoint=* | -datastore-endpoint=*) set_secret SKIFF_DATASTORE_ENDPOINT "${1%%=*}" "${1#*=}" ;;
	*)
		add_service_arg "$1"
		return
		;;
	esac
	[ -z "$_secret_var" ] || _secret_flag=$1
	_prev=
}
# add_service_arg ARG: ARG goes on the service's command line.
add_service_arg() {
	ARGS_SYSTEMD="$ARGS_SYSTEMD $(systemd_word "$1")"
	ARGS_SH="$ARGS_SH $(sh_quote "$1")"
	case $1 in
	'' | *[!A-Za-z0-9_./:=,@+-]*)
		_openrc_vars=$((_openrc_vars + 1))
		OPENRC_ARG_VARS="${OPENRC_ARG_VARS}skiff_arg_$_openrc_vars=$(sh_quote "$1")
"
		OPENRC_ARGS="$OPENRC_ARGS \"\$skiff_arg_$_openrc_vars\""
		;;
	*) OPENRC_ARGS="$OPENRC_ARGS $1" ;;
	esac
	case $_prev in
	--kubelet-arg | -kubelet-arg) kubelet_arg "$1" ;;
	--config | -config | -c) CONFIG_ARG=$1 ;;
	esac
	case $1 in
	--kubelet-arg=* | -kubelet-arg=*) kubelet_arg "${1#*=}" ;;
	--config=* | -config=* | -c=*) CONFIG_ARG=${1#*=} ;;
	esac
	_prev=$1
}
set -f
# shellcheck disable=SC2086 # word splitting of INSTALL_SKIFF_EXEC is the point
for _a in ${INSTALL_SKIFF_EXEC:-}; do add_arg "$_a"; done
set +f
for _a in "$@"; do add_arg "$_a"; done
[ -z "$_secret_var" ] || fatal "$_secret_flag needs a value"

if [ -z "$MODE" ]; then
	if [ -n "$SKIFF_URL" ]; then MODE=agent; else MODE=server; fi
fi
# SKIFF_KUBELET_ARG (comma-separated) counts when no flag names a root dir.
if [ -z "$KUBELET_DIR" ] && [ -n "${SKIFF_KUBELET_ARG:-}" ]; then
	_ifs=$IFS
	IFS=,
	set -f
	for _a in $SKIFF_KUBELET_ARG; do kubelet_arg "$_a"; done
	set +f
	IFS=$_ifs
fi
if [ -n "$KUBELET_DIR" ]; then
	KUBELET_DIR=${KUBELET_DIR%/}
	check_dir "--kubelet-arg root-dir" "${KUBELET_DIR:-/}"
fi
if [ -n "$SKIFF_URL" ]; then
	case $SKIFF_URL in
	https://*) ;;
	*) fatal "SKIFF_URL must start with https:// (got '$SKIFF_URL')" ;;
	esac
	[ -n "$SKIFF_TOKEN" ] || fatal "SKIFF_URL is set but SKIFF_TOKEN is empty: set SKIFF_TOKEN to the join token printed by 'skiff token' on the server"
fi

if [ "$MODE" = agent ]; then DEFAULT_NAME=skiff-agent; else DEFAULT_NAME=skiff; fi
NAME=${INSTALL_SKIFF_NAME:-$DEFAULT_NAME}
case $NAME in
'' | *[!A-Za-z0-9_.@-]*) fatal "INSTALL_SKIFF_NAME may only contain letters, digits, '.', '_', '@' and '-' (got '$NAME')" ;;
esac

case $INIT in
auto)
	if [ -d /run/systemd/system ]; then
		INIT=systemd
	elif command -v rc-service >/dev/null 2>&1 || command -v openrc >/dev/null 2>&1; then
		INIT=openrc
	else
		INIT=none
	fi
	;;
systemd | openrc | none) ;;
*) fatal "INSTALL_SKIFF_INIT must be auto, systemd, openrc or none (got '$INIT')" ;;
esac

SKIFF="$BIN_DIR/skiff"
# OpenRC evals the command path unquoted, as it does command_args.
if [ "$INIT" = openrc ]; then
	case $SKIFF in
	*[!A-Za-z0-9_./:=,@+-]*) fatal "with OpenRC, INSTALL_SKIFF_BIN_DIR may only contain letters, digits and '_./:=,@+-' (got '$BIN_DIR')" ;;
	esac
fi
KILLALL="$BIN_DIR/skiff-killall.sh"
UNINSTALL="$BIN_DIR/$NAME-uninstall.sh"
UNIT="$SYSTEMD_DIR/$NAME.service"
UNIT_ENV="$SYSTEMD_DIR/$NAME.service.env"
OPENRC_SCRIPT="$OPENRC_DIR/$NAME"
OPENRC_ENV="$CONFIG_DIR/$NAME.env"
CONFIG_FILE="$CONFIG_DIR/config.yaml"
# The config file the service reads: --config, else SKIFF_CONFIG_FILE as
# the service's environment file sets it (see env_lines), else the default.
if [ -n "$CONFIG_ARG" ]; then
	SERVICE_CONFIG=$CONFIG_ARG
elif [ -n "${INSTALL_SKIFF_CONFIG:-}" ] && [ "$CONFIG_FILE" != /etc/skiff/config.yaml ]; then
	SERVICE_CONFIG=$CONFIG_FILE
else
	SERVICE_CONFIG=${SKIFF_CONFIG_FILE-/etc/skiff/config.yaml}
fi

TMP_DIR=
BIN_TMP=
cleanup() {
	[ -z "$TMP_DIR" ] || rm -rf "$TMP_DIR"
	[ -z "$BIN_TMP" ] || rm -f "$BIN_TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# --- binary -----------------------------------------------------------------

detect_arch() {
	_m=$(uname -m)
	case $_m in
	x86_64 | amd64) ARCH=amd64 ;;
	aarch64 | arm64) ARCH=arm64 ;;
	armv7* | armv8l | armhf | arm) ARCH=arm ;;
	s390x) ARCH=s390x ;;
	riscv64) ARCH=riscv64 ;;
	*) fatal "unsupported architecture $_m" ;;
	esac
}

download() { # download URL FILE
	if command -v curl >/dev/null 2>&1; then
		curl -fsL -o "$2" "$1" 2>/dev/null || fatal "download of $1 failed (curl exit $?)"
	elif command -v wget >/dev/null 2>&1; then
		wget -q -O "$2" "$1" 2>/dev/null || fatal "download of $1 failed (wget exit $?)"
	else
		fatal "neither curl nor wget found: install one, or set INSTALL_SKIFF_BIN to a local skiff binary"
	fi
}

sha256_of() {
	if command -v sha256sum >/dev/null 2>&1; then
		sha256sum "$1" | awk '{print $1}'
	elif command -v shasum >/dev/null 2>&1; then
		shasum -a 256 "$1" | awk '{print $1}'
	else
		fatal "neither sha256sum nor shasum found: cannot verify the download"
	fi
}

get_binary() { # sets SRC_BIN
	if [ -n "${INSTALL_SKIFF_BIN:-}" ]; then
		[ -f "$INSTALL_SKIFF_BIN" ] || fatal "INSTALL_SKIFF_BIN=$INSTALL_SKIFF_BIN is not a file"
		[ -r "$INSTALL_SKIFF_BIN" ] || fatal "INSTALL_SKIFF_BIN=$INSTALL_SKIFF_BIN is not readable"
		SRC_BIN=$INSTALL_SKIFF_BIN
		return
	fi
	if [ -z "${INSTALL_SKIFF_URL_BASE:-}" ] || [ -z "${INSTALL_SKIFF_VERSION:-}" ]; then
		fatal "no skiff binary to install: set INSTALL_SKIFF_BIN to a local binary, or INSTALL_SKIFF_URL_BASE and INSTALL_SKIFF_VERSION to download one"
	fi
	detect_arch
	_base="${INSTALL_SKIFF_URL_BASE%/}/$INSTALL_SKIFF_VERSION"
	TMP_DIR=$(mktemp -d) || fatal "cannot create a temporary directory"
	info "Downloading $_base/skiff-$ARCH"
	download "$_base/sha256sum-$ARCH.txt" "$TMP_DIR/sha256sum.txt"
	download "$_base/skiff-$ARCH" "$TMP_DIR/skiff"
	# Accept "<hash>  skiff-<arch>" lines (sha256sum output) or a bare hash.
	_want=$(awk -v f="skiff-$ARCH" '$2 == f || $2 == "*" f { print $1; exit }' "$TMP_DIR/sha256sum.txt")
	if [ -z "$_want" ]; then
		_want=$(awk 'NF == 1 && NR == 1 { print $1 }' "$TMP_DIR/sha256sum.txt")
	fi
	[ -n "$_want" ] || fatal "no checksum for skiff-$ARCH in $_base/sha256sum-$ARCH.txt"
	_got=$(sha256_of "$TMP_DIR/skiff")
	[ "$_got" = "$_want" ] || fatal "sha256 mismatch for $_base/skiff-$ARCH: expected $_want, got $_got"
	info "Verified sha256 of skiff-$ARCH"
	SRC_BIN="$TMP_DIR/skiff"
}

install_binary() {
	mkdir -p "$BIN_DIR" || fatal "cannot create $BIN_DIR"
	if [ -f "$SKIFF" ] && [ ! -L "$SKIFF" ] && cmp -s "$SRC_BIN" "$SKIFF" 2>/dev/null; then
		chmod 0755 "$SKIFF" || fatal "cannot chmod $SKIFF"
		info "skiff binary $SKIFF is up to date"
		return
	fi
	BIN_TMP="$BIN_DIR/.skiff.tmp.$$"
	cp "$SRC_BIN" "$BIN_TMP" || fatal "cannot copy the skiff binary to $BIN_DIR"
	chmod 0755 "$BIN_TMP" || fatal "cannot chmod $BIN_TMP"
	mv -f "$BIN_TMP" "$SKIFF" || fatal "cannot move the skiff binary into place at $SKIFF"
	BIN_TMP=
	SERVICE_CHANGED=true
	info "Installed skiff binary to $SKIFF"
}

# points_to_skiff PATH: PATH is a symlink to the installed skiff.
points_to_skiff() {
	[ -L "$1" ] || return 1
	_t=$(readlink "$1") || return 1
	[ "$_t" = skiff ] || [ "$_t" = "$SKIFF" ]
}

install_symlinks() {
	if [ "$SYMLINK" = skip ]; then
		info "Skipping kubectl, crictl and ctr symlinks (INSTALL_SKIFF_SYMLINK=skip)"
		return
	fi
	for _cmd in kubectl crictl ctr; do
		_link="$BIN_DIR/$_cmd"
		if points_to_skiff "$_link"; then
			continue
		fi
		if [ -e "$_link" ] || [ -L "$_link" ]; then
			if [ "$SYMLINK" != force ]; then
				info "Leaving existing $_link alone (set INSTALL_SKIFF_SYMLINK=force to replace it)"
				continue
			fi
			rm -f "$_link" || fatal "cannot remove $_link"
		fi
		ln -s skiff "$_link" || fatal "cannot create symlink $_link"
		info "Created symlink $_link -> skiff"
	done
}

# --- environment, config ----------------------------------------------------

# env_lines FORMAT: KEY=VALUE lines for the service (systemd or sh format):
# every SKIFF_* variable of the installer's environment, sorted.
env_lines() {
	_names=$(env | sed -n 's/^\(SKIFF_[A-Za-z0-9_]*\)=.*/\1/p' | grep -v '^SKIFF_KILLALL_' | sort -u)
	_cfg=
	if [ -n "${INSTALL_SKIFF_CONFIG:-}" ] && [ "$CONFIG_FILE" != /etc/skiff/config.yaml ]; then
		_cfg=SKIFF_CONFIG_FILE
		_names=$(printf '%s\n%s\n' "$_names" SKIFF_CONFIG_FILE | sed '/^$/d' | sort -u)
	fi
	for _n in $_names; do
		if [ "$_n" = "$_cfg" ]; then
			_val=$CONFIG_FILE
		else
			eval "_val=\${$_n}"
		fi
		if [ "$1" = systemd ]; then
			printf '%s=%s\n' "$_n" "$(systemd_env_value "$_val")"
		else
			printf '%s=%s\n' "$_n" "$(sh_quote "$_val")"
		fi
	done
}

install_config() {
	[ -n "${INSTALL_SKIFF_CONFIG:-}" ] || return 0
	mkdir -p "$CONFIG_DIR" || fatal "cannot create $CONFIG_DIR"
	write_service_file "$CONFIG_FILE" 0600 <<EOF
$INSTALL_SKIFF_CONFIG
EOF
	info "Wrote $CONFIG_FILE (mode 0600)"
}

# --- services ---------------------------------------------------------------

install_systemd() {
	mkdir -p "$SYSTEMD_DIR" || fatal "cannot create $SYSTEMD_DIR"
	_env=$(env_lines systemd)
	write_service_file "$UNIT_ENV" 0600 <<EOF
$_env
EOF
	info "Wrote $UNIT_ENV (mode 0600)"
	write_service_file "$UNIT" 0644 <<EOF
[Unit]
Description=Skiff Kubernetes ($MODE)
Documentation=https://github.com/skiff-io/skiff
Wants=network-online.target
After=network-online.target

[Service]
Type=exec
EnvironmentFile=-$UNIT_ENV
ExecStartPre=-/sbin/modprobe br_netfilter
ExecStartPre=-/sbin/modprobe overlay
ExecStart=$(systemd_word "$SKIFF") $MODE$ARGS_SYSTEMD
KillMode=process
Delegate=yes
Restart=always
RestartSec=5s
LimitNOFILE=20000
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
TimeoutStartSec=0

[Install]
WantedBy=multi-user.target
EOF
	info "Wrote systemd unit $UNIT"

	if [ "$SKIP_ENABLE" = true ] && [ "$SKIP_START" = true ]; then
		info "Not enabling or starting $NAME (INSTALL_SKIFF_SKIP_ENABLE/INSTALL_SKIFF_SKIP_START)"
		return
	fi
	command -v systemctl >/dev/null 2>&1 || fatal "INSTALL_SKIFF_INIT=systemd but systemctl is not in PATH"
	systemctl daemon-reload || fatal "systemctl daemon-reload failed"
	if [ "$SKIP_ENABLE" != true ]; then
		systemctl enable "$NAME" >/dev/null 2>&1 || fatal "systemctl enable $NAME failed"
		info "Enabled $NAME"
	fi
	if [ "$SKIP_START" != true ]; then
		if [ "$SERVICE_CHANGED" = true ]; then
			info "Starting $NAME"
			systemctl restart "$NAME" || fatal "systemctl restart $NAME failed: see 'journalctl -u $NAME'"
		else
			# Nothing it reads changed: a restart would only interrupt it.
			info "$NAME is up to date: starting it only if it is not running"
			systemctl start "$NAME" || fatal "systemctl start $NAME failed: see 'journalctl -u $NAME'"
		fi
	fi
}

install_openrc() {
	mkdir -p "$OPENRC_DIR" "$CONFIG_DIR" || fatal "cannot create $OPENRC_DIR or $CONFIG_DIR"
	_env=$(env_lines sh)
	write_service_file "$OPENRC_ENV" 0600 <<EOF
$_env
EOF
	info "Wrote $OPENRC_ENV (mode 0600)"
	write_service_file "$OPENRC_SCRIPT" 0755 <<EOF
#!/sbin/openrc-run
# Generated by the skiff installer.
description="Skiff Kubernetes ($MODE)"
command=$(sh_quote "$SKIFF")
# OpenRC splits command_args on blanks and evals the words: an argument
# that is not a plain word stays whole as a variable named there.
${OPENRC_ARG_VARS}command_args='$MODE$OPENRC_ARGS'
command_background=true
supervisor=supervise-daemon
respawn_delay=5
respawn_max=0
pidfile="/var/run/$NAME.pid"
output_log="/var/log/$NAME.log"
error_log="/var/log/$NAME.log"
rc_ulimit="-n 20000"

depend() {
	want net
	after network-online firewall
}

start_pre() {
	modprobe br_netfilter 2>/dev/null || true
	modprobe overlay 2>/dev/null || true
}

set -a
[ -f $(sh_quote "$OPENRC_ENV") ] && . $(sh_quote "$OPENRC_ENV")
set +a
EOF
	info "Wrote OpenRC script $OPENRC_SCRIPT"
	if [ "$SKIP_ENABLE" != true ]; then
		command -v rc-update >/dev/null 2>&1 || fatal "INSTALL_SKIFF_INIT=openrc but rc-update is not in PATH"
		rc-update add "$NAME" default >/dev/null || fatal "rc-update add $NAME default failed"
		info "Enabled $NAME"
	fi
	if [ "$SKIP_START" != true ]; then
		command -v rc-service >/dev/null 2>&1 || fatal "INSTALL_SKIFF_INIT=openrc but rc-service is not in PATH"
		# Nothing it reads changed: a restart would only interrupt it.
		if [ "$SERVICE_CHANGED" = false ] && rc-service "$NAME" status >/dev/null 2>&1; then
			info "$NAME is up to date and running: not restarting it"
			return
		fi
		info "Starting $NAME"
		rc-service "$NAME" restart || fatal "rc-service $NAME restart failed: see /var/log/$NAME.log"
	fi
}

# --- generated scripts ------------------------------------------------------

# settings_header: the install-time settings baked into the scripts.
settings_header() {
	cat <<EOF
#!/bin/sh
# Generated by the skiff installer; re-running the installer rewrites it.
BIN_DIR=$(sh_quote "$BIN_DIR")
DATA_DIR=$(sh_quote "$DATA_DIR")
SYSTEMD_DIR=$(sh_quote "$SYSTEMD_DIR")
OPENRC_DIR=$(sh_quote "$OPENRC_DIR")
KUBELET_DIR=$(sh_quote "$KUBELET_DIR")
RUN_DIR=/run/skiff
EOF
}

# script_prologue: what every generated script starts with after its
# settings: strict variables, the info helper, and re-running as root.
script_prologue() {
	cat <<'EOF'
set -u

info() { printf '[INFO] %s\n' "$*"; }

if [ "$(id -u)" != 0 ]; then
	if command -v sudo >/dev/null 2>&1; then exec sudo "$0" "$@"; fi
	printf '[ERROR] %s must run as root\n' "${0##*/}" >&2
	exit 1
fi
EOF
}

install_killall() {
	{
		settings_header
		cat <<EOF
SERVICE_CONFIG=$(sh_quote "$SERVICE_CONFIG")
EOF
		cat <<'EOF'
# skiff-killall.sh: stop skiff and everything it started on this host, the
# way a reboot would: the skiff processes, skiff's containerd, the shims and
# every pod's processes, the mounts of the kubelet, containerd and the pods'
# network namespaces, the pod network's links, iptables rules and nftables
# tables, and $RUN_DIR. The data (datastore, images, certificates) stays.
#
# A skiff process is one whose executable is $BIN_DIR/skiff or lies under
# $DATA_DIR, or is named skiff and uses $DATA_DIR (in its command line,
# environment, working directory or open files). With SKIFF_KILLALL_ANY=true
# every process whose executable is named skiff is. Safe to run when
# nothing is running, and again.
EOF
		script_prologue
		cat <<'EOF'

# The paths under the data dir are the binary's: `skiff paths` prints its
# layout as NAME='value' lines (AGENT_CNI_IPAM_DIR=...), read once, here,
# while the binary is still there; its DATA_DIR and RUN_DIR are the ones
# above. Output that is not such lines is not evaluated.
if layout=$("$BIN_DIR/skiff" paths --config '' --data-dir "$DATA_DIR" 2>/dev/null) &&
	! printf '%s\n' "$layout" | grep -qv "^[A-Z][A-Z0-9_]*='"; then
	eval "$layout"
fi
# The binary may already be gone (removed by hand before this script ran)
# or predate `skiff paths`; the node's state must go all the same, so only
# then are the paths this script needs the ones such a binary used.
: "${AGENT_CNI_IPAM_DIR:=$DATA_DIR/agent/cni/networks}"
: "${RUN_CONTAINERD_DIR:=$RUN_DIR/containerd}"

# Stop the services (ignore failures; they may not be running).
for unit in "$SYSTEMD_DIR"/skiff.service "$SYSTEMD_DIR"/skiff-*.service; do
	[ -f "$unit" ] || continue
	if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
		name=${unit##*/}
		systemctl stop "${name%.service}" >/dev/null 2>&1 || true
	fi
done
for script in "$OPENRC_DIR"/skiff "$OPENRC_DIR"/skiff-*; do
	[ -f "$script" ] || continue
	if command -v rc-service >/dev/null 2>&1; then
		rc-service "${script##*/}" stop >/dev/null 2>&1 || true
	fi
done

# --- processes ---------------------------------------------------------------

# uses_data_dir PROCDIR: the process refers to $DATA_DIR.
uses_data_dir() {
	cmdline=" $({ tr '\0' ' ' <"$1/cmdline"; } 2>/dev/null) "
	case $cmdline in
	*" $DATA_DIR "* | *" $DATA_DIR/"* | *"=$DATA_DIR "* | *"=$DATA_DIR/"*) return 0 ;;
	esac
	if { tr '\0' '\n' <"$1/environ"; } 2>/dev/null | grep -qxF "SKIFF_DATA_DIR=$DATA_DIR"; then
		return 0
	fi
	for link in "$1/cwd" "$1"/fd/*; do
		target=$(readlink "$link" 2>/dev/null) || continue
		case $target in
		"$DATA_DIR" | "$DATA_DIR"/*) return 0 ;;
		esac
	done
	return 1
}

# skiff_pids: processes of skiff (and of programs under its data dir),
# skiff's containerd included; the shims are left to shim_pids.
skiff_pids() {
	for d in /proc/[0-9]*; do
		pid=${d#/proc/}
		[ "$pid" != "$$" ] || continue
		exe=$(readlink "$d/exe" 2>/dev/null) || continue
		exe=${exe% (deleted)}
		case ${exe##*/} in
		containerd-shim*) continue ;;
		esac
		case $exe in
		"$BIN_DIR/skiff" | "$DATA_DIR"/*)
			echo "$pid"
			continue
			;;
		esac
		[ "${exe##*/}" = skiff ] || continue
		if [ "${SKIFF_KILLALL_ANY:-false}" = true ] || uses_data_dir "$d"; then
			echo "$pid"
		fi
	done
}

# shim_pids: containerd shims started from skiff's data dir or serving its
# containerd (-address $RUN_DIR/...).
shim_pids() {
	for d in /proc/[0-9]*; do
		exe=$(readlink "$d/exe" 2>/dev/null) || continue
		case ${exe##*/} in
		containerd-shim*) ;;
		*) continue ;;
		esac
		cmdline=" $({ tr '\0' ' ' <"$d/cmdline"; } 2>/dev/null) "
		case "$exe $cmdline" in
		*"$DATA_DIR/"* | *"$RUN_DIR/"*) echo "${d#/proc/}" ;;
		esac
	done
}

# KUBEPODS: a /proc/<pid>/cgroup line of a pod's process (cgroup v1 or v2,
# cgroupfs or systemd driver).
KUBEPODS='^[0-9]+:[^:]*:/(.*/)?kubepods'

# kubepods_pids: processes in the pods' cgroups.
kubepods_pids() {
	grep -l -E "$KUBEPODS" /proc/[0-9]*/cgroup 2>/dev/null | sed -n 's|^/proc/\([0-9]*\)/cgroup$|\1|p'
}

# proc_table: "PID PPID STATE" of every process.
proc_table() {
	for stat in /proc/[0-9]*/stat; do
		{ IFS= read -r line <"$stat"; } 2>/dev/null || continue
		pid=${stat#/proc/}
		# The fields after "(comm) ": state, ppid, ...
		# shellcheck disable=SC2086
		set -- ${line##*") "}
		[ $# -ge 2 ] || continue
		echo "${pid%/stat} $2 $1"
	done
}

# with_descendants PID...: the live (not zombie) processes among PIDs and
# their descendants, never this script or PID 1.
with_descendants() {
	[ $# -gt 0 ] || return 0
	proc_table | awk -v roots="$*" -v self="$$" '
		BEGIN { n = split(roots, r, " "); for (i = 1; i <= n; i++) want[r[i]] = 1 }
		{ parent[$1] = $2; state[$1] = $3 }
		END {
			do {
				changed = 0
				for (p in parent)
					if (!(p in want) && (parent[p] in want)) { want[p] = 1; changed = 1 }
			} while (changed)
			for (p in want)
				if ((p in state) && state[p] != "Z" && p != self && p != 1) print p
		}'
}

# args_dirs: reads one argument a line and prints "kubelet DIR" for a
# --kubelet-arg root-dir=DIR and "config FILE" for a --config FILE.
args_dirs() {
	awk '
		function karg(v) { sub(/^--?/, "", v); if (v ~ /^root-dir=/) print "kubelet " substr(v, 10) }
		prev == "--kubelet-arg" || prev == "-kubelet-arg" { karg($0) }
		prev == "--config" || prev == "-config" || prev == "-c" { print "config " $0 }
		/^--?kubelet-arg=/ { karg(substr($0, index($0, "=") + 1)) }
		/^(--?config|-c)=/ { print "config " substr($0, index($0, "=") + 1) }
		{ prev = $0 }'
}

# config_root_dirs FILE: the kubelet root-dir values a skiff config file
# sets (kubelet-arg: [root-dir=DIR] or a "- root-dir=DIR" list item).
config_root_dirs() {
	[ -f "$1" ] || return 0
	sed -n -e '/^[[:space:]]*#/d' -e "s/.*root-dir=\\([^]\"',[:space:]#]*\\).*/\\1/p" "$1" 2>/dev/null
}

# The kubelet's root dirs: the one given at install time, the ones the
# service's config file and the running skiff processes name, or else the
# kubelet's default. One a line.
KUBELET_DIRS=
add_kubelet_dir() {
	case $1 in
	/*[!/]*) ;;
	*) return 0 ;; # relative, empty or /
	esac
	set -- "${1%/}"
	case "
$KUBELET_DIRS" in
	*"
$1
"*) return 0 ;;
	esac
	KUBELET_DIRS="$KUBELET_DIRS$1
"
}
add_kubelet_dir "$KUBELET_DIR"
for dir in $(config_root_dirs "$SERVICE_CONFIG"); do add_kubelet_dir "$dir"; done

pids=$(skiff_pids)
for pid in $pids; do
	found=$({ tr '\0' '\n' <"/proc/$pid/cmdline"; } 2>/dev/null | args_dirs)
	env=$({ tr '\0' '\n' <"/proc/$pid/environ"; } 2>/dev/null)
	file=$(printf '%s\n' "$env" | sed -n 's/^SKIFF_CONFIG_FILE=//p')
	[ -z "$file" ] || found="$found
config $file"
	for arg in $(printf '%s\n' "$env" | sed -n 's/^SKIFF_KUBELET_ARG=//p' | tr ',' '\n'); do
		case $arg in
		root-dir=* | --root-dir=*) found="$found
kubelet ${arg#*root-dir=}" ;;
		esac
	done
	while read -r kind value; do
		case $kind in
		kubelet) add_kubelet_dir "$value" ;;
		config)
			case $value in
			/*) ;;
			*) value=$(readlink "/proc/$pid/cwd" 2>/dev/null)/$value ;;
			esac
			for dir in $(config_root_dirs "$value"); do add_kubelet_dir "$dir"; done
			;;
		esac
	done <<LIST
$found
LIST
done
[ -n "$KUBELET_DIRS" ] || KUBELET_DIRS="/var/lib/kubelet
"

# skiff first, so that no kubelet restarts the containers killed next.
if [ -n "$pids" ]; then
	info "Stopping skiff processes: $(printf '%s' "$pids" | tr '\n' ' ')"
	# shellcheck disable=SC2086
	kill -TERM $pids 2>/dev/null || true
	i=0
	while [ "$i" -lt 15 ] && [ -n "$(skiff_pids)" ]; do
		sleep 1
		i=$((i + 1))
	done
	pids=$(skiff_pids)
	if [ -n "$pids" ]; then
		info "Killing skiff processes: $(printf '%s' "$pids" | tr '\n' ' ')"
		# shellcheck disable=SC2086
		kill -KILL $pids 2>/dev/null || true
	fi
fi

# Then the shims, the containers under them, and every process left in the
# pods' cgroups (a container whose shim died lives on under PID 1). When
# this script itself runs in a pod's cgroup (skiff inside a pod of another
# cluster), the cgroups are not a guide: only the shims' trees go.
by_cgroup=true
if grep -q -E "$KUBEPODS" "/proc/$$/cgroup" 2>/dev/null; then
	by_cgroup=false
	info "This script runs in a kubepods cgroup: killing only the shims' process trees"
fi
round=0
while [ "$round" -lt 20 ]; do
	roots=$(shim_pids)
	if [ "$by_cgroup" = true ]; then
		roots="$roots $(kubepods_pids)"
	fi
	# shellcheck disable=SC2086
	pids=$(with_descendants $roots)
	[ -n "$pids" ] || break
	if [ "$round" -eq 0 ]; then
		info "Killing containerd shims and pod processes: $(printf '%s' "$pids" | sort -n | tr '\n' ' ')"
	fi
	# shellcheck disable=SC2086
	kill -KILL $pids 2>/dev/null || true
	round=$((round + 1))
	sleep 1
done
if [ -n "$pids" ]; then
	info "Processes still alive after $round rounds of SIGKILL: $(printf '%s' "$pids" | tr '\n' ' ')"
fi

# --- mounts --------------------------------------------------------------------

# mount_escape PATH: PATH as /proc/self/mounts writes it.
mount_escape() {
	printf '%s' "$1" | sed -e 's/\\/\\134/g' -e 's/ /\\040/g' -e 's/	/\\011/g'
}

# mounts_with_prefix PREFIX: mount points that start with PREFIX, deepest
# first, escaped as in /proc/self/mounts.
mounts_with_prefix() {
	awk -v p="$(mount_escape "$1")" 'index($2, p) == 1 { print $2 }' /proc/self/mounts 2>/dev/null | sort -r -u
}

# unmount_prefix PREFIX: unmounts every mount point that starts with
# PREFIX, deepest first (lazily when a plain unmount fails); stacked mounts
# take one pass each.
unmount_prefix() {
	[ -r /proc/self/mounts ] || return 0
	n=0
	pass=0
	while [ "$pass" -lt 10 ]; do
		list=$(mounts_with_prefix "$1")
		[ -n "$list" ] || break
		while IFS= read -r m; do
			# \040 (space) and the like: octal escapes for printf %b.
			m=$(printf '%b' "$(printf '%s' "$m" | sed 's/\\\([0-7][0-7][0-7]\)/\\0\1/g')")
			if umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; then
				n=$((n + 1))
			fi
		done <<LIST
$list
LIST
		pass=$((pass + 1))
	done
	[ "$n" -eq 0 ] || info "Unmounted $n mounts under ${1%/}"
	if [ -n "$(mounts_with_prefix "$1")" ]; then
		info "Some mounts under ${1%/} could not be unmounted"
		return 1
	fi
	return 0
}

# Below (never at) each dir: the dir itself may be the host's own mount.
while IFS= read -r dir; do
	[ -z "$dir" ] || unmount_prefix "$dir/" || true
done <<LIST
$KUBELET_DIRS
LIST
run_dir_clean=true
unmount_prefix "$RUN_DIR/" || run_dir_clean=false
unmount_prefix "$DATA_DIR/" || true

# The pods' network namespaces.
unmount_prefix /run/netns/cni- || true
for ns in /run/netns/cni-*; do
	[ -e "$ns" ] || continue
	if [ -z "$(mounts_with_prefix "$ns")" ]; then
		rm -f "$ns"
	fi
done

# --- network -------------------------------------------------------------------

# Network links made by flannel, the bridge CNI plugin and kube-proxy.
if command -v ip >/dev/null 2>&1; then
	if ip link show cni0 >/dev/null 2>&1; then
		for veth in $(ip -o link show master cni0 2>/dev/null | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }'); do
			ip link delete "$veth" >/dev/null 2>&1 || true
		done
	fi
	for link in cni0 flannel.1 flannel-v6.1 kube-ipvs0; do
		if ip link show "$link" >/dev/null 2>&1; then
			ip link delete "$link" >/dev/null 2>&1 || true
			info "Deleted network link $link"
		fi
	done
fi

# iptables rules and chains of kube-proxy, flannel, the CNI plugins and
# skiff.
for ipt in iptables ip6tables; do
	command -v "$ipt-save" >/dev/null 2>&1 || continue
	command -v "$ipt-restore" >/dev/null 2>&1 || continue
	if "$ipt-save" 2>/dev/null | grep -q -i -E 'KUBE-|CNI-|FLANNEL|skiff'; then
		"$ipt-save" | grep -v -E 'KUBE-|CNI-' | grep -v -i -E 'flannel|skiff' | "$ipt-restore" ||
			info "$ipt-restore failed; some rules may remain"
		info "Removed skiff $ipt rules"
	fi
done

# The network policy controller's address sets, once no rule uses them.
if command -v ipset >/dev/null 2>&1; then
	ipset list -n 2>/dev/null | grep -E '^(inet6:)?KUBE-(SRC|DST)-' |
		while read -r set; do
			if ipset destroy "$set" 2>/dev/null; then
				info "Destroyed ipset $set"
			fi
		done
fi

# nftables tables of kube-proxy (nftables mode) and flannel.
if command -v nft >/dev/null 2>&1; then
	nft list tables 2>/dev/null |
		awk '$1 == "table" && NF == 3 && tolower($3) ~ /^(kube-proxy|flannel)|skiff/ { print $2, $3 }' |
		while read -r family table; do
			if nft delete table "$family" "$table" 2>/dev/null; then
				info "Deleted nftables table $family $table"
			fi
		done
fi

# --- state ---------------------------------------------------------------------

# The pods' IP reservations (host-local IPAM) and the CNI result cache of
# skiff's containers: their network namespaces are gone.
if [ -d "$RUN_CONTAINERD_DIR" ] && [ -d /var/lib/cni/results ]; then
	for dir in "$RUN_CONTAINERD_DIR"/io.containerd.runtime.v2.task/k8s.io/* "$RUN_CONTAINERD_DIR"/io.containerd.grpc.v1.cri/sandboxes/*; do
		[ -d "$dir" ] || continue
		rm -f /var/lib/cni/results/*-"${dir##*/}"-*
	done
fi
rm -rf "$AGENT_CNI_IPAM_DIR"

if [ "$run_dir_clean" = true ]; then
	rm -rf "$RUN_DIR"
else
	info "Not removing $RUN_DIR: mounts remain under it"
fi
exit 0
EOF
	} | write_file "$KILLALL" 0755
	info "Wrote $KILLALL"
}

install_uninstall() {
	{
		settings_header
		cat <<EOF
NAME=$(sh_quote "$NAME")
CONFIG_DIR=$(sh_quote "$CONFIG_DIR")
OPENRC_ENV=$(sh_quote "$OPENRC_ENV")
EOF
		cat <<'EOF'
# Uninstalls skiff: stops everything (skiff-killall.sh), removes the service,
# and, unless another skiff service installed by the installer remains, the
# binary, its symlinks, the scripts, the config and the data.
EOF
		script_prologue
		cat <<'EOF'

if [ -x "$BIN_DIR/skiff-killall.sh" ]; then
	"$BIN_DIR/skiff-killall.sh"
fi

if [ -f "$SYSTEMD_DIR/$NAME.service" ] || [ -f "$SYSTEMD_DIR/$NAME.service.env" ]; then
	if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
		systemctl disable "$NAME" >/dev/null 2>&1 || true
	fi
	rm -f "$SYSTEMD_DIR/$NAME.service" "$SYSTEMD_DIR/$NAME.service.env"
	if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
		systemctl daemon-reload >/dev/null 2>&1 || true
		systemctl reset-failed "$NAME" >/dev/null 2>&1 || true
	fi
	info "Removed systemd unit $NAME"
fi
if [ -f "$OPENRC_DIR/$NAME" ]; then
	if command -v rc-update >/dev/null 2>&1; then
		rc-update delete "$NAME" default >/dev/null 2>&1 || true
	fi
	rm -f "$OPENRC_DIR/$NAME"
	info "Removed OpenRC script $NAME"
fi
rm -f "$OPENRC_ENV"

# A server and an agent installed side by side share the binary and data.
for other in "$BIN_DIR"/skiff-uninstall.sh "$BIN_DIR"/skiff-*-uninstall.sh; do
	[ -f "$other" ] || continue
	[ "$other" != "$BIN_DIR/$NAME-uninstall.sh" ] || continue
	info "Keeping the skiff binary and data: $other still uses them"
	rm -f "$BIN_DIR/$NAME-uninstall.sh"
	exit 0
done

for cmd in kubectl crictl ctr; do
	link="$BIN_DIR/$cmd"
	[ -L "$link" ] || continue
	target=$(readlink "$link") || continue
	if [ "$target" = skiff ] || [ "$target" = "$BIN_DIR/skiff" ]; then
		rm -f "$link"
	fi
done
rm -f "$BIN_DIR/skiff" "$BIN_DIR/skiff-killall.sh"
rm -rf "$CONFIG_DIR" "$DATA_DIR" "${KUBELET_DIR:-/var/lib/kubelet}" "$RUN_DIR"
info "Removed skiff from $BIN_DIR, $CONFIG_DIR and $DATA_DIR"
rm -f "$BIN_DIR/$NAME-uninstall.sh"
exit 0
EOF
	} | write_file "$UNINSTALL" 0755
	info "Wrote $UNINSTALL"
}

# --- main -------------------------------------------------------------------

get_binary
install_binary
install_symlinks
install_config
install_killall
install_uninstall

case $INIT in
systemd) install_systemd ;;
openrc) install_openrc ;;
none)
	_env_hint=
	[ "$MODE" != agent ] || _env_hint="SKIFF_URL=... SKIFF_TOKEN=... "
	for _n in $SECRET_ARGS; do
		case $_env_hint in
		*"$_n=..."*) ;;
		*) _env_hint="$_env_hint$_n=... " ;;
		esac
	done
	_hint="$_env_hint$SKIFF $MODE$ARGS_SH"
	info "No service manager (systemd or OpenRC) in use, so no service was installed: start skiff by hand with: $_hint"
	;;
esac
info "Done: skiff $MODE installed as $NAME; uninstall with $UNINSTALL"
