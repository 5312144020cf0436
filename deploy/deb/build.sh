#!/usr/bin/env bash
# Builds the ledge .deb from binaries already built (docs/OPERATIONS.md, "Installing on an
# edge host"): ledge-node and ledge in /usr/bin, /etc/ledge/ledge.toml (a conffile), the
# systemd unit (enabled by postinst, not started), data in /var/lib/ledge owned by the
# `ledge` system user. Plain dpkg-deb, no debhelper: the maintainer scripts are the ones
# dh_installsystemd writes, spelled out below.
#
#   deploy/deb/build.sh [--bin-dir DIR] [--arch ARCH] [--out DIR] [--compress TYPE]
#
#   --bin-dir DIR  where ledge-node and ledge are (default target/release; for arm64:
#                  target/aarch64-unknown-linux-gnu/release)
#   --arch ARCH    Debian architecture (default: from the ledge-node binary's ELF header:
#                  amd64 or arm64)
#   --out DIR      where the .deb is written (default target/deb)
#   --compress T   dpkg-deb compression: xz (default), gzip, zstd or none
#
# The binaries are stripped into the package (as dh_strip does): symbols and the line tables
# of the release profile stay in target/, the package carries only code (strip for amd64,
# aarch64-linux-gnu-strip from binutils-aarch64-linux-gnu for arm64).
# Prints the path of the .deb it wrote.
set -euo pipefail

repo="$(cd "$(dirname "$0")/../.." && pwd)"
bin_dir="$repo/target/release"
arch=""
out="$repo/target/deb"
compress=xz
while [ $# -gt 0 ]; do
    case "$1" in
        --bin-dir) bin_dir="$2"; shift 2 ;;
        --arch) arch="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --compress) compress="$2"; shift 2 ;;
        *) echo "usage: $0 [--bin-dir DIR] [--arch ARCH] [--out DIR] [--compress TYPE]" >&2; exit 2 ;;
    esac
done

for binary in ledge-node ledge; do
    if [ ! -x "$bin_dir/$binary" ]; then
        echo "error: $bin_dir/$binary is missing: build it first (cargo build --release --bin $binary)" >&2
        exit 1
    fi
done

if [ -z "$arch" ]; then
    machine="$(readelf -h "$bin_dir/ledge-node" | sed -n 's/^ *Machine: *//p')"
    case "$machine" in
        *X86-64*) arch=amd64 ;;
        *AArch64*) arch=arm64 ;;
        *) echo "error: cannot tell the Debian architecture of $bin_dir/ledge-node ($machine): pass --arch" >&2; exit 1 ;;
    esac
fi

case "$arch" in
    amd64) strip_tool=strip ;;
    arm64) strip_tool=aarch64-linux-gnu-strip ;;
    *) strip_tool="" ;;
esac
if [ -z "$strip_tool" ] || ! command -v "$strip_tool" >/dev/null 2>&1; then
    echo "error: no strip tool for $arch (amd64: strip from binutils; arm64: aarch64-linux-gnu-strip from binutils-aarch64-linux-gnu)" >&2
    exit 1
fi

# The workspace version (Cargo.toml, [workspace.package]).
version="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' "$repo/Cargo.toml")"
if [ -z "$version" ]; then
    echo "error: no version in $repo/Cargo.toml [workspace.package]" >&2
    exit 1
fi

# The newest glibc symbol version either binary needs is the libc6 it depends on.
glibc="$(for binary in ledge-node ledge; do readelf --dyn-syms -W "$bin_dir/$binary"; done \
    | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n 1)"

staging="$(mktemp -d)"
trap 'rm -rf "$staging"' EXIT
root="$staging/ledge_${version}_${arch}"

install -d "$root/DEBIAN" "$root/usr/bin" "$root/etc/ledge" "$root/usr/lib/systemd/system" \
    "$root/usr/share/doc/ledge"
for binary in ledge-node ledge; do
    "$strip_tool" --strip-all -o "$root/usr/bin/$binary" "$bin_dir/$binary"
    chmod 0755 "$root/usr/bin/$binary"
done
install -m 0644 "$repo/deploy/deb/ledge.toml" "$root/etc/ledge/ledge.toml"
install -m 0644 "$repo/deploy/systemd/ledge-node.service" "$root/usr/lib/systemd/system/"
install -m 0644 "$repo/README.md" "$repo/docs/OPERATIONS.md" "$root/usr/share/doc/ledge/"
cat > "$root/usr/share/doc/ledge/copyright" <<'EOF'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: ledge
License: Apache-2.0

Files: *
License: Apache-2.0
 On Debian systems the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
EOF

installed_kib="$(du -sk --exclude=DEBIAN "$root" | cut -f1)"
depends="adduser, init-system-helpers (>= 1.50)"
if [ -n "$glibc" ]; then
    depends="libc6 (>= $glibc), $depends"
fi
cat > "$root/DEBIAN/control" <<EOF
Package: ledge
Version: $version
Architecture: $arch
Maintainer: Ledge maintainers <ledge@localhost>
Installed-Size: $installed_kib
Depends: $depends
Section: net
Priority: optional
Homepage: https://github.com/ledge/ledge
Description: Ledge event-log broker for edge hosts
 A Kafka-like event log: topics, partitions and durable logs served over QUIC and the
 Kafka wire protocol, with WASM transforms. The ledge-node service is installed and
 enabled but not started: edit /etc/ledge/ledge.toml, then systemctl start ledge-node.
EOF
echo "/etc/ledge/ledge.toml" > "$root/DEBIAN/conffiles"

cat > "$root/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = "configure" ]; then
    # The service's own user; its data directory is the unit's StateDirectory.
    if ! getent passwd ledge >/dev/null; then
        adduser --system --group --home /var/lib/ledge --no-create-home \
            --gecos "Ledge event-log broker" --quiet ledge
    fi
    install -d -o ledge -g ledge -m 0750 /var/lib/ledge
fi
if [ "$1" = "configure" ] || [ "$1" = "abort-upgrade" ] || [ "$1" = "abort-deconfigure" ] || [ "$1" = "abort-remove" ]; then
    # Enabled on first install (never started here: the operator starts it once the config
    # is right); an upgrade keeps whatever the operator chose.
    deb-systemd-helper unmask 'ledge-node.service' >/dev/null || true
    if deb-systemd-helper --quiet was-enabled 'ledge-node.service'; then
        deb-systemd-helper enable 'ledge-node.service' >/dev/null || true
    else
        deb-systemd-helper update-state 'ledge-node.service' >/dev/null || true
    fi
    if [ -d /run/systemd/system ]; then
        systemctl --system daemon-reload >/dev/null || true
        # An upgrade restarts a node that was running, so it runs the new binary; a stopped
        # node stays stopped.
        if [ -n "$2" ]; then
            deb-systemd-invoke try-restart 'ledge-node.service' >/dev/null || true
        fi
    fi
fi
exit 0
EOF

cat > "$root/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e
if [ -d /run/systemd/system ] && [ "$1" = remove ]; then
    deb-systemd-invoke stop 'ledge-node.service' >/dev/null || true
fi
exit 0
EOF

cat > "$root/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
    systemctl --system daemon-reload >/dev/null || true
fi
if [ "$1" = "remove" ]; then
    if [ -x "/usr/bin/deb-systemd-helper" ]; then
        deb-systemd-helper mask 'ledge-node.service' >/dev/null || true
    fi
fi
if [ "$1" = "purge" ]; then
    if [ -x "/usr/bin/deb-systemd-helper" ]; then
        deb-systemd-helper purge 'ledge-node.service' >/dev/null || true
        deb-systemd-helper unmask 'ledge-node.service' >/dev/null || true
    fi
    # The data in /var/lib/ledge and the ledge user are kept: remove them by hand
    # (rm -r /var/lib/ledge; deluser ledge) once the logs are no longer wanted.
fi
exit 0
EOF
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"

mkdir -p "$out"
deb="$out/ledge_${version}_${arch}.deb"
dpkg-deb --build --root-owner-group "-Z$compress" "$root" "$deb" >/dev/null
echo "$deb"
