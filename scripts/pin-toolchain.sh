#!/usr/bin/env bash
# Regenerates scripts/toolchain.env: the Go toolchain version start.sh fetches
# when no `go` is on PATH, with the sha256 and size of each toolchain zip.
#
# Usage: scripts/pin-toolchain.sh [go version, default: the current pin]
# Needs a host `go`; it downloads golang.org/toolchain@v0.0.1-go<ver>.linux-{amd64,arm64}
# through the normal module proxy (and so checks them against sum.golang.org).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out="$here/toolchain.env"

ver=${1:-}
if [[ -z $ver ]]; then
	# shellcheck source=/dev/null
	. "$out"
	ver=$GO_TOOLCHAIN_GO_VERSION
fi
ver=${ver#go}

command -v go >/dev/null || { echo "pin-toolchain.sh: needs go on PATH" >&2; exit 1; }

tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
{
	cat <<'EOF'
# Pinned Go toolchain that start.sh fetches when no `go` is on PATH.
# It is the module golang.org/toolchain@v0.0.1-go${GO_TOOLCHAIN_GO_VERSION}.linux-<arch>
# served by any Go module proxy ($GOPROXY/golang.org/toolchain/@v/<version>.zip).
# Regenerate with scripts/pin-toolchain.sh <go version> (needs a host `go`); do not edit by hand.
# This file is sourced by bash: plain KEY=value lines only.
EOF
	echo "GO_TOOLCHAIN_GO_VERSION=$ver"
	for arch in amd64 arm64; do
		mod="golang.org/toolchain@v0.0.1-go$ver.linux-$arch"
		# Run outside any module so go.mod/go.sum of this repo are untouched.
		zip=$(cd / && GOFLAGS='' go mod download -json "$mod" | sed -n 's/^[[:space:]]*"Zip": "\(.*\)",$/\1/p')
		[[ -f $zip ]] || { echo "pin-toolchain.sh: go mod download $mod gave no zip" >&2; exit 1; }
		sum=$(sha256sum "$zip" | cut -d' ' -f1)
		size=$(stat -c %s "$zip")
		echo "GO_TOOLCHAIN_SHA256_linux_$arch=$sum"
		echo "GO_TOOLCHAIN_SIZE_linux_$arch=$size"
	done
} >"$tmp"
chmod 644 "$tmp"
mv "$tmp" "$out"
trap - EXIT
cat "$out"
