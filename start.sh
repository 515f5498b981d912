#!/usr/bin/env bash
# start.sh - entry point of the homeserver as a Ratio1 Worker App (and on a developer machine).
#
#   1. decides the data dir exactly like the binary does (MATRIX_DATA_DIR, else /data when it
#      exists and is writable, else ./data) and exports MATRIX_DATA_DIR so both agree;
#   2. computes the commit ID (git HEAD of a clean checkout, else a sha256 over go.mod, go.sum
#      and all *.go files);
#   3. when <data>/bin/homeserver-<commit> exists, starts it at once: no apt, no network, no go;
#   4. otherwise builds it: with the `go` on PATH if there is one, else with the pinned Go
#      toolchain (scripts/toolchain.env) fetched from the module proxy into <data>/toolchain,
#      verified against the committed sha256; apt-get installs curl/unzip/ca-certificates only
#      when they are missing, a download is needed and we are root. A failed build falls back to
#      the last good binary (<data>/bin/current);
#   5. supervises `<binary> serve`: restarts it on crash with exponential backoff (1s doubling,
#      cap 30s, reset after 60s of uptime), forwards SIGTERM/SIGINT to it (as SIGTERM), waits
#      for it and exits 0. Safe as PID 1. Writes the server's PID to <data>/homeserver.pid.
#
# Knobs (all optional): GOPROXY (comma/pipe list, https:// or file://), GOCACHE (build cache; else
# <data>/go/cache in toolchain mode), START_NO_APT=1 (never run apt-get),
# START_STOP_TIMEOUT (seconds to wait for the server after forwarding a signal before SIGKILL, 60).
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -uo pipefail

# start.sh's own lines go to fd 3 (our stdout) so that they keep their prefix even when a trap
# fires while a command's output is being piped through prefix().
exec 3>&1
log() { printf 'start.sh: %s\n' "$*" >&3; }
prefix() { sed -u "s/^/start.sh: $1/"; }

# ---------------------------------------------------------------------------------------------
# Signals: installed first so that a stop request is honoured in every phase (PID 1 too:
# the kernel drops signals without a handler for PID 1).
stopping=0 # set once SIGTERM/SIGINT arrived
sigcount=0 # bumped by every trapped signal; tells "wait was interrupted" from "child exited"
child=0    # PID of the running server, 0 when none
killer=0   # PID of the SIGKILL watchdog
job=0      # PID of a background helper (build, download, sleep) to interrupt on stop
STOP_TIMEOUT=${START_STOP_TIMEOUT:-60}
on_signal() {
	sigcount=$((sigcount + 1))
	log "received SIG$1"
	if ((stopping)); then return; fi
	stopping=1
	if ((child > 0)) && kill -0 "$child" 2>/dev/null; then
		# Always forwarded as SIGTERM: a background job of a non-interactive shell starts with
		# SIGINT ignored, so a forwarded SIGINT could be lost.
		log "forwarding SIGTERM to the server (pid $child); waiting for it to exit"
		kill -TERM "$child" 2>/dev/null
		(
			trap 'kill $! 2>/dev/null; exit 0' TERM
			sleep "$STOP_TIMEOUT" &
			wait $!
			log "server did not exit ${STOP_TIMEOUT}s after SIGTERM; sending SIGKILL"
			kill -KILL "$child" 2>/dev/null
		) &
		killer=$!
	elif ((job > 0)); then
		kill -TERM "$job" 2>/dev/null
	fi
}
trap 'on_signal TERM' TERM
trap 'on_signal INT' INT

# run CMD...: runs CMD in the background and waits for it, so that SIGTERM is handled at once
# even during a long build or download. On a stop request it kills CMD and exits 0.
run() {
	"$@" &
	job=$!
	local rc n
	if ((stopping)); then kill -TERM "$job" 2>/dev/null; fi # the signal came before job was set
	while :; do
		n=$sigcount
		wait "$job"
		rc=$?
		if ((stopping)); then
			kill -TERM "$job" 2>/dev/null
			wait "$job" 2>/dev/null
			log "stop requested while running '$1'; exiting"
			exit 0
		fi
		((sigcount == n)) && break
	done
	job=0
	return "$rc"
}

ORIG_PWD=$PWD
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P) || {
	log "FATAL: cannot find the repository directory"
	exit 1
}

# ---------------------------------------------------------------------------------------------
# 1. Data dir: the same rule as the binary. Relative paths are relative to the working dir,
#    which is also the server's working dir.
if [[ -n ${MATRIX_DATA_DIR:-} ]]; then
	DATA=$MATRIX_DATA_DIR
	why="MATRIX_DATA_DIR"
elif [[ -d /data && -w /data ]]; then
	DATA=/data
	why="/data exists and is writable"
else
	DATA=./data
	why="default ./data"
fi
[[ $DATA == /* ]] || DATA=$ORIG_PWD/$DATA
# shellcheck disable=SC2174 # only the data dir itself (e.g. ./data) is made private, like the binary does
if ! mkdir -p -m 700 "$DATA" || ! DATA=$(cd "$DATA" && pwd -P) || [[ ! -w $DATA ]]; then
	log "FATAL: data dir $DATA ($why) cannot be created or is not writable"
	exit 1
fi
export MATRIX_DATA_DIR=$DATA
BIN_DIR=$DATA/bin
PID_FILE=$DATA/homeserver.pid
mkdir -p "$BIN_DIR" || exit 1
log "repo $REPO, data dir $DATA ($why)"

# One start.sh per data dir (two servers must never share a database). The lock fd is not
# passed on to the server.
if command -v flock >/dev/null 2>&1 && exec 9>>"$DATA/.start.sh.lock"; then
	if ! flock -n 9; then
		log "another start.sh holds $DATA/.start.sh.lock; waiting for it to exit"
		run flock 9 || exit 1
	fi
fi

# Let git work on a checkout owned by another user (the runner clones as whoever it likes);
# this also covers the VCS stamping that `go build` does with git.
export GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=safe.directory GIT_CONFIG_VALUE_0='*'

# ---------------------------------------------------------------------------------------------
# 2. Commit ID.
source_hash() {
	# go.mod, go.sum and every *.go file, sorted by path; the hash covers paths and contents.
	# Hidden dirs and the data dir (which may hold a module cache) are skipped.
	local rel=./data
	case $DATA/ in "$REPO"/*) rel=./${DATA#"$REPO"/} ;; esac
	(
		cd "$REPO" &&
			find . -mindepth 1 \( -type d \( -name '.*' -o -path ./data -o -path "$rel" \) \) -prune -o \
				-type f \( -name '*.go' -o -path ./go.mod -o -path ./go.sum \) -print0 |
			LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-40
	)
}
# Sets ID: HEAD of a clean git checkout (the repo dir must be the top of the work tree),
# else "src-" and the source hash (a plain copy of the repo, or a checkout with local changes).
commit_id() {
	local head top
	if command -v git >/dev/null 2>&1 &&
		head=$(git -C "$REPO" rev-parse -q --verify HEAD 2>/dev/null) &&
		top=$(git -C "$REPO" rev-parse --show-toplevel 2>/dev/null) &&
		[[ $(cd "$top" && pwd -P) == "$REPO" ]]; then
		if git -C "$REPO" diff --quiet HEAD -- 2>/dev/null; then
			ID=$head
			return
		fi
		log "git checkout at ${head:0:12} has local changes; identifying the source by its hash"
	fi
	ID=src-$(source_hash)
}
commit_id
if [[ -z $ID || $ID == src- ]]; then
	log "FATAL: cannot compute a commit ID for $REPO"
	exit 1
fi
BIN=$BIN_DIR/homeserver-$ID
export MATRIX_BUILD_COMMIT=$ID
log "commit $ID"

# ---------------------------------------------------------------------------------------------
# 3./4. Toolchain and build.

# need_pkgs PKG...: makes sure the Debian packages are installed; apt-get only as root.
need_pkgs() {
	(($#)) || return 0
	if [[ $(id -u) != 0 || -n ${START_NO_APT:-} ]] || ! command -v apt-get >/dev/null 2>&1; then
		log "FATAL: missing $*; install them (e.g. apt-get install $*) or put go on PATH"
		return 1
	fi
	log "installing $* with apt-get"
	export DEBIAN_FRONTEND=noninteractive
	if ! run apt-get update -qq > >(prefix "[apt] ") 2>&1 ||
		! run apt-get install -y -qq --no-install-recommends "$@" > >(prefix "[apt] ") 2>&1; then
		log "FATAL: apt-get install $* failed"
		return 1
	fi
}

SYS_CA=/etc/ssl/certs/ca-certificates.crt
# Sets PROXIES (the GOPROXY list) and NEED_HTTPS (1 when a http(s) proxy is in it).
parse_goproxy() {
	local p
	IFS=',|' read -ra PROXIES <<<"${GOPROXY:-https://proxy.golang.org}"
	NEED_HTTPS=0
	for p in "${PROXIES[@]}"; do
		case $p in http://* | https://*) NEED_HTTPS=1 ;; esac
	done
}

# CA certificates: the system bundle when there is one; otherwise the copy saved under <data>
# by an earlier run, so a replaced container does not need apt just for certificates.
setup_ca() {
	local saved=$DATA/toolchain/ca-certificates.crt
	if [[ -s $SYS_CA ]]; then
		mkdir -p "$DATA/toolchain" && cp -f "$SYS_CA" "$saved.tmp" && mv -f "$saved.tmp" "$saved"
		return 0
	fi
	if [[ -s $saved ]]; then
		export SSL_CERT_FILE=$saved CURL_CA_BUNDLE=$saved
		return 0
	fi
	return 1
}

# fetch_toolchain: downloads, verifies and extracts the pinned toolchain into $TC_DIR.
fetch_toolchain() {
	local want_sha want_size p src url got size part zip rc tmpx tries
	want_sha=GO_TOOLCHAIN_SHA256_linux_$ARCH
	want_sha=${!want_sha:-}
	want_size=GO_TOOLCHAIN_SIZE_linux_$ARCH
	want_size=${!want_size:-0}
	if [[ -z $want_sha ]]; then
		log "FATAL: scripts/toolchain.env has no sha256 for linux-$ARCH"
		return 1
	fi
	parse_goproxy
	local pkgs=()
	command -v unzip >/dev/null 2>&1 || pkgs+=(unzip)
	if ((NEED_HTTPS)); then
		command -v curl >/dev/null 2>&1 || pkgs+=(curl)
		setup_ca || pkgs+=(ca-certificates)
	fi
	need_pkgs "${pkgs[@]}" || return 1
	if ((NEED_HTTPS)); then setup_ca || true; fi

	local dl=$DATA/toolchain/download
	mkdir -p "$dl" || return 1
	part=$dl/$TC_VER.zip.part # partial or unverified download; resumed by curl -C -
	size=$(stat -c %s "$part" 2>/dev/null || echo 0)
	if ((size > want_size)); then
		rm -f "$part"
	elif ((size == want_size)) && [[ $(sha256sum "$part" | cut -d' ' -f1) != "$want_sha" ]]; then
		rm -f "$part"
	fi

	got=""
	for p in "${PROXIES[@]}"; do
		p=${p%/}
		size=$(stat -c %s "$part" 2>/dev/null || echo 0)
		if ((size == want_size)); then got=1 && break; fi
		case $p in
		off)
			log "GOPROXY has 'off': not downloading the toolchain from further entries"
			break
			;;
		direct | "")
			continue
			;;
		file://*)
			src=${p#file://}/golang.org/toolchain/@v/$TC_VER.zip
			if [[ ! -f $src ]]; then
				log "toolchain not found in $p"
				continue
			fi
			log "copying toolchain $TC_VER from $src"
			run cp -f "$src" "$part" || {
				log "copy from $src failed"
				continue
			}
			got=1
			break
			;;
		http://* | https://*)
			url=$p/golang.org/toolchain/@v/$TC_VER.zip
			for tries in 1 2 3 4 5; do
				size=$(stat -c %s "$part" 2>/dev/null || echo 0)
				log "downloading toolchain $url (have $size of $want_size bytes, attempt $tries)"
				run curl -fsSL --connect-timeout 30 --retry 3 --retry-delay 2 -C - -o "$part" "$url"
				rc=$?
				((rc == 0)) && break
				log "download failed (curl exit $rc)"
				# 22: HTTP error such as 404: try the next proxy; others: resume.
				((rc == 22)) && break
				sleep "$tries"
			done
			if ((rc == 0)); then
				got=1
				break
			fi
			;;
		*)
			log "ignoring unsupported GOPROXY entry $p"
			;;
		esac
	done
	if [[ -z $got ]]; then
		log "FATAL: could not fetch the Go toolchain $TC_VER from GOPROXY=${GOPROXY:-https://proxy.golang.org}"
		return 1
	fi

	log "verifying sha256 of $TC_VER.zip"
	got=$(sha256sum "$part" | cut -d' ' -f1)
	size=$(stat -c %s "$part" 2>/dev/null || echo 0)
	if [[ $got != "$want_sha" ]]; then
		rm -f "$part"
		log "FATAL: toolchain checksum mismatch for $TC_VER.zip: expected sha256 $want_sha ($want_size bytes), got $got ($size bytes). The download was deleted and nothing was extracted; check GOPROXY or scripts/toolchain.env."
		return 1
	fi
	zip=$dl/$TC_VER.zip
	mv -f "$part" "$zip" || return 1

	# Extract next to the target, then rename: a half-extracted toolchain is never used.
	rm -rf "$DATA"/toolchain/.extract.*
	tmpx=$DATA/toolchain/.extract.$$
	log "extracting toolchain into $TC_DIR"
	if ! mkdir -p "$tmpx" || ! run unzip -q "$zip" -d "$tmpx"; then
		rm -rf "$tmpx"
		log "FATAL: unzip of $zip failed"
		return 1
	fi
	src=$tmpx/golang.org/toolchain@$TC_VER
	chmod -f a+x "$src"/bin/* "$src"/pkg/tool/*/* 2>/dev/null
	if ! "$src/bin/go" version >/dev/null 2>&1; then
		rm -rf "$tmpx"
		log "FATAL: the extracted toolchain does not run ($src/bin/go)"
		return 1
	fi
	if ! rm -rf "$TC_DIR" || ! mv -T "$src" "$TC_DIR"; then
		rm -rf "$tmpx"
		log "FATAL: cannot move the toolchain into $TC_DIR"
		return 1
	fi
	rm -rf "$tmpx" "$zip"
	# Toolchains of earlier pins are not needed any more.
	find "$DATA/toolchain" -mindepth 1 -maxdepth 1 -type d -name 'go*.linux-*' ! -name "${TC_DIR##*/}" -exec rm -rf {} +
	log "toolchain ready: $("$TC_DIR/bin/go" version)"
}

# ensure_go: makes `go` available: the one on PATH, else the pinned toolchain under <data>.
ensure_go() {
	if command -v go >/dev/null 2>&1; then
		log "using go on PATH: $(command -v go) ($(go version 2>/dev/null))"
		return 0
	fi
	# shellcheck source=scripts/toolchain.env
	. "$REPO/scripts/toolchain.env" || return 1
	case $(uname -m) in
	x86_64 | amd64) ARCH=amd64 ;;
	aarch64 | arm64) ARCH=arm64 ;;
	*)
		log "FATAL: no pinned Go toolchain for $(uname -m); put go on PATH"
		return 1
		;;
	esac
	TC_VER=v0.0.1-go$GO_TOOLCHAIN_GO_VERSION.linux-$ARCH
	TC_DIR=$DATA/toolchain/go$GO_TOOLCHAIN_GO_VERSION.linux-$ARCH
	if [[ -x $TC_DIR/bin/go ]]; then
		log "using toolchain $TC_DIR"
	else
		fetch_toolchain || return 1
	fi
	unset GOROOT
	export PATH=$TC_DIR/bin:$PATH GOTOOLCHAIN=local
	export GOPATH=$DATA/go GOMODCACHE=$DATA/go/pkg/mod GOCACHE=${GOCACHE:-$DATA/go/cache}
	export GOPROXY=${GOPROXY:-https://proxy.golang.org,direct}
	export HOME=${HOME:-$DATA}
	parse_goproxy
	if ((NEED_HTTPS)) && ! setup_ca; then
		need_pkgs ca-certificates && setup_ca
	fi
	log "GOCACHE=$GOCACHE GOMODCACHE=$GOMODCACHE GOPROXY=$GOPROXY"
	return 0
}

set_current() {
	ln -sfn "$(basename "$1")" "$BIN_DIR/.current.tmp" && mv -Tf "$BIN_DIR/.current.tmp" "$BIN_DIR/current"
}

# build: builds ./cmd/homeserver into $BIN atomically.
build() {
	ensure_go || return 1
	rm -f "$BIN_DIR"/.homeserver-*.tmp.*
	local tmp=$BIN_DIR/.homeserver-$ID.tmp.$$ t0=$SECONDS
	log "building ./cmd/homeserver for commit $ID (first build may take several minutes)"
	# Not in a ( subshell ): the build runs via `run` so a SIGTERM is handled at once.
	cd "$REPO" || return 1
	CGO_ENABLED=0 run go build -trimpath -o "$tmp" ./cmd/homeserver > >(prefix "[go] ") 2>&1
	local rc=$?
	cd "$ORIG_PWD" || return 1
	if ((rc != 0)); then
		rm -f "$tmp"
		log "go build failed (exit $rc)"
		return 1
	fi
	if [[ ! -x $tmp ]] || ! mv -f "$tmp" "$BIN"; then
		rm -f "$tmp"
		return 1
	fi
	log "built $BIN in $((SECONDS - t0))s"
	# Keep the newest three binaries (the new one is the newest).
	find "$BIN_DIR" -maxdepth 1 -type f -name 'homeserver-*' -printf '%T@ %p\n' |
		sort -rn | tail -n +4 | cut -d' ' -f2- | while read -r old; do rm -f "$old"; done
}

if [[ -x $BIN ]]; then
	log "reusing binary $BIN built for commit $ID (no build needed)"
	set_current "$BIN"
elif build; then
	set_current "$BIN"
else
	old=$(readlink -f "$BIN_DIR/current" 2>/dev/null)
	if [[ -z $old || ! -x $old ]]; then
		old=$(find "$BIN_DIR" -maxdepth 1 -type f -name 'homeserver-*' -perm -u+x -printf '%T@ %p\n' 2>/dev/null |
			sort -rn | head -n1 | cut -d' ' -f2-)
	fi
	if [[ -z $old || ! -x $old ]]; then
		log "FATAL: could not build the homeserver for commit $ID and there is no earlier binary in $BIN_DIR"
		exit 1
	fi
	log "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
	log "!!! BUILD FAILED for commit $ID: running the OLD binary $old"
	log "!!! The server is NOT running the code of this commit. See the [go] lines above."
	log "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
	BIN=$old
	set_current "$BIN"
fi

# ---------------------------------------------------------------------------------------------
# 5. Supervision.
if ((stopping)); then
	log "stop requested before the server started; exiting"
	exit 0
fi
delay=1
while :; do
	started=$SECONDS
	log "starting $BIN serve"
	"$BIN" serve 3>&- 9>&- &
	child=$!
	if ((stopping)); then kill -TERM "$child" 2>/dev/null; fi # the signal came before child was set
	echo "$child" >"$PID_FILE.tmp" && mv -f "$PID_FILE.tmp" "$PID_FILE"
	log "server running (pid $child)"
	while :; do
		n=$sigcount
		wait "$child" 2>/dev/null # (bash's own "Killed" job report is replaced by our log line)
		rc=$?
		((sigcount == n)) && break # the server exited (not a signal interrupting wait)
	done
	child=0
	rm -f "$PID_FILE"
	if ((killer > 0)); then
		kill "$killer" 2>/dev/null
		wait "$killer" 2>/dev/null
		killer=0
	fi
	if ((stopping)); then
		log "server exited (status $rc); start.sh exiting"
		exit 0
	fi
	up=$((SECONDS - started))
	((up >= 60)) && delay=1
	log "server exited with status $rc after ${up}s; restarting in ${delay}s"
	run sleep "$delay"
	delay=$((delay * 2))
	((delay > 30)) && delay=30
done
