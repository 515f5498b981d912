#!/usr/bin/env bash
# A private PostgreSQL cluster for the tests: sourced by .ci/run (pg_start,
# pg_stop, pg_packages), or run directly to wrap one command:
#
#	.ci/postgres.sh go test -tags goolm -count=1 ./storage
#
# runs the command with MATRIX_TEST_POSTGRES_URL and MATRIX_TEST_STORAGE=postgres
# set, against a fresh cluster on a temp directory and a free loopback port,
# and stops the cluster afterwards. A MATRIX_TEST_POSTGRES_URL already set
# is used as it is (its server must let the user create databases).
#
# PostgreSQL comes from Debian's packages when it is missing (as root; CI
# runs as root on a fresh Debian machine). initdb refuses to run as root, so
# the cluster belongs to the postgres user then.

pg_dir=""
pg_bin=""
pg_owned=0

# pg_find_bin sets pg_bin to the newest installed server's bin directory.
pg_find_bin() {
	pg_bin=$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -1)
	if [ -z "$pg_bin" ] && command -v initdb >/dev/null 2>&1; then
		pg_bin=$(dirname "$(command -v initdb)")
	fi
}

pg_install() {
	pg_find_bin
	[ -n "$pg_bin" ] && return 0
	if [ "$(id -u)" -ne 0 ]; then
		echo "pg: PostgreSQL is not installed and this is not root: install it (apt-get install postgresql) or set MATRIX_TEST_POSTGRES_URL" >&2
		return 1
	fi
	echo "pg: installing PostgreSQL (apt-get install postgresql)" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >/dev/null
	# The package's own cluster and service are not used (and may not start
	# without an init system); ours is private.
	apt-get install -y -qq --no-install-recommends postgresql >/dev/null
	pg_find_bin
	if [ -z "$pg_bin" ]; then
		echo "pg: apt-get installed no PostgreSQL server" >&2
		return 1
	fi
}

# pg_as runs a command as the cluster's owner.
pg_as() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

# pg_port_free succeeds when nothing listens on the loopback port.
pg_port_free() {
	! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

pg_start() {
	if [ -n "${MATRIX_TEST_POSTGRES_URL:-}" ]; then
		echo "pg: using MATRIX_TEST_POSTGRES_URL" >&2
		return 0
	fi
	pg_install
	if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
		useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
	fi
	pg_dir=$(mktemp -d "${TMPDIR:-/tmp}/matrixhs-pg.XXXXXX")
	chmod 755 "$pg_dir"
	[ "$(id -u)" -eq 0 ] && chown postgres "$pg_dir"
	pg_owned=1
	trap pg_stop EXIT
	pg_as "$pg_bin/initdb" -D "$pg_dir/data" -A trust -U postgres -E UTF8 --locale=C --no-sync >"$pg_dir/initdb.log" 2>&1 ||
		{ cat "$pg_dir/initdb.log" >&2; return 1; }
	# Test settings: durability is not wanted of a throwaway cluster, and
	# every test opens a database of its own, with a pool, in parallel.
	local opts="-c listen_addresses=127.0.0.1 -k $pg_dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=500"
	local port tries=0
	port=$((20000 + RANDOM % 20000))
	while :; do
		tries=$((tries + 1))
		if pg_port_free "$port" && pg_as "$pg_bin/pg_ctl" -D "$pg_dir/data" -o "-p $port $opts" -l "$pg_dir/server.log" -w -t 60 start >/dev/null; then
			break
		fi
		if [ "$tries" -ge 10 ]; then
			echo "pg: the cluster did not start; its log:" >&2
			cat "$pg_dir/server.log" >&2 || true
			return 1
		fi
		port=$((port + 1 + RANDOM % 100))
	done
	export MATRIX_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
	echo "pg: PostgreSQL $("$pg_bin/postgres" -V | awk '{print $3}') on 127.0.0.1:$port ($pg_dir)" >&2
}

# pg_stop stops the cluster pg_start started, and removes its files.
pg_stop() {
	[ "$pg_owned" -eq 1 ] || return 0
	pg_owned=0
	pg_as "$pg_bin/pg_ctl" -D "$pg_dir/data" -m immediate -w stop >/dev/null 2>&1 || true
	rm -rf "$pg_dir"
	unset MATRIX_TEST_POSTGRES_URL
}

# pg_packages lists the packages whose tests open a database, without the
# engine-independent fuzz tests.
pg_packages() {
	local p deps
	for p in $(go list ./...); do
		[ "$p" = matrixhs/tests/fuzz ] && continue
		# Read the whole list first: grep -q stopping early would make go
		# list fail on a closed pipe, and under pipefail skip the package.
		deps=$(go list -test -deps "$p") || return 1
		if grep -qx matrixhs/storage <<<"$deps"; then
			echo "$p"
		fi
	done
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	set -euo pipefail
	if [ $# -eq 0 ]; then
		echo "usage: $0 COMMAND [ARG...]" >&2
		exit 2
	fi
	pg_start
	MATRIX_TEST_STORAGE=postgres "$@"
fi
