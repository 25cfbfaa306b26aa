#!/usr/bin/env bash
# build.sh OUTDIR: build the Debian package of makuosan and msync into
# OUTDIR/makuosan_VERSION_ARCH.deb (what `make deb` runs). Needs Go, dpkg-deb
# and dpkg-shlibdeps (dpkg-dev); not root.
#
# The version is what the built makuosan --version says (internal/version),
# so it is written nowhere else. The package holds:
#   /usr/sbin/makuosan, /usr/bin/msync
#   /usr/lib/systemd/system/makuosan.service, makuosan@.service
#   /etc/default/makuosan (a conffile)
#   /usr/share/man/man8/makuosan.8.gz, /usr/share/man/man1/msync.1.gz
#   bash and zsh completions, /usr/share/doc/makuosan/{copyright,changelog.gz}
#   /var/lib/makuosan (the default --state-dir)
# and the maintainer scripts beside this file (the group makuosan, the unit
# enabled and started as dh_installsystemd would).
set -euo pipefail

out=${1:?usage: build.sh OUTDIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
GO=${GO:-go}
top=$(cd "$(dirname "$0")/../.." && pwd)
here=$top/deploy/deb
arch=${DEBARCH:-$(dpkg --print-architecture)}
work=$out/deb
root=$work/root

rm -rf "$work"
mkdir -p "$work/bin" "$root/DEBIAN"
# -buildvcs=true: the VCS stamp --version prints, even where GOFLAGS turns
# it off; without a repository it is simply absent. -trimpath: no build
# paths in the binaries. -s -w: no symbol table nor DWARF (a third of the
# size; panics still name functions and lines).
(cd "$top" && "$GO" build -buildvcs=true -trimpath -ldflags="-s -w" -o "$work/bin/" ./cmd/makuosan ./cmd/msync)
version=$("$work/bin/makuosan" --version | awk '{print $2}')
[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "build.sh: makuosan --version gave no release: $version" >&2; exit 1; }

install -D -m 0755 "$work/bin/makuosan" "$root/usr/sbin/makuosan"
install -D -m 0755 "$work/bin/msync" "$root/usr/bin/msync"
mkdir -p "$root/usr/lib/systemd/system"
for unit in makuosan.service makuosan@.service; do
	sed 's|/usr/local/sbin/makuosan|/usr/sbin/makuosan|g' "$top/deploy/systemd/$unit" > "$root/usr/lib/systemd/system/$unit"
	chmod 0644 "$root/usr/lib/systemd/system/$unit"
done
install -D -m 0644 "$top/deploy/systemd/makuosan.default" "$root/etc/default/makuosan"
for page in man8/makuosan.8 man1/msync.1; do
	mkdir -p "$root/usr/share/man/${page%/*}"
	gzip -9n < "$top/deploy/man/${page#*/}" > "$root/usr/share/man/$page.gz"
done
for cmd in makuosan msync; do
	install -D -m 0644 "$top/deploy/completion/bash/$cmd" "$root/usr/share/bash-completion/completions/$cmd"
	install -D -m 0644 "$top/deploy/completion/zsh/_$cmd" "$root/usr/share/zsh/vendor-completions/_$cmd"
done
doc=$root/usr/share/doc/makuosan
mkdir -p "$doc"
gzip -9n < "$top/CHANGELOG.md" > "$doc/changelog.gz"
{
	echo "makuo (makuosan, msync)"
	echo
	cat "$top/LICENSE"
	echo
	echo "The binaries are statically linked with these Go modules, under their own"
	echo "licenses, reproduced below:"
	# Every module compiled into either binary, with its license file from
	# the module cache.
	(cd "$top" && "$GO" list -deps -f '{{with .Module}}{{if not .Main}}{{.Path}} {{.Version}} {{.Dir}}{{end}}{{end}}' ./cmd/makuosan ./cmd/msync) | sort -u |
		while read -r path modversion dir; do
			echo
			echo "-------------------------------------------------------------------------------"
			echo "$path $modversion"
			echo
			lic=$(find "$dir" -maxdepth 1 -type f \( -iname 'LICENSE*' -o -iname 'COPYING*' \) | sort | head -1)
			[ -n "$lic" ] || { echo "build.sh: no license file in $dir" >&2; exit 1; }
			cat "$lic"
		done
	# The Go standard library and runtime are in every Go binary.
	echo
	echo "-------------------------------------------------------------------------------"
	echo "The Go standard library and runtime ($("$GO" env GOVERSION))"
	echo
	cat "$("$GO" env GOROOT)/LICENSE"
} > "$doc/copyright"
chmod 0644 "$doc/copyright" "$doc/changelog.gz"
install -d -m 0755 "$root/var/lib/makuosan"

# Shared-library dependencies (libc, through cgo's os/user and net) as
# dpkg-shlibdeps reads them from the binaries; it wants a debian/control.
mkdir -p "$work/shlibs/debian"
printf 'Source: makuosan\n\nPackage: makuosan\nArchitecture: any\n' > "$work/shlibs/debian/control"
if ! shlibdeps=$(cd "$work/shlibs" && dpkg-shlibdeps -O -e"$root/usr/sbin/makuosan" -e"$root/usr/bin/msync" 2>"$work/shlibs/stderr"); then
	cat "$work/shlibs/stderr" >&2
	echo "build.sh: dpkg-shlibdeps failed (apt-get install dpkg-dev)" >&2
	exit 1
fi
shlibs=$(sed -n 's/^shlibs:Depends=//p' <<<"$shlibdeps")
depends=adduser
[ -z "$shlibs" ] || depends="$depends, $shlibs"
size=$(du -sk --apparent-size "$root" | cut -f1)
sed -e "s|@VERSION@|$version|" -e "s|@ARCH@|$arch|" -e "s|@SIZE@|$size|" -e "s|Depends: adduser, @SHLIBS@|Depends: $depends|" \
	"$here/control" > "$root/DEBIAN/control"
install -m 0644 "$here/conffiles" "$root/DEBIAN/conffiles"
for script in postinst prerm postrm; do
	install -m 0755 "$here/$script" "$root/DEBIAN/$script"
done
(cd "$root" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | sort -z | xargs -0 md5sum) > "$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/md5sums"

deb=$out/makuosan_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
