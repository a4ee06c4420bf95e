#!/usr/bin/env bash
# Build the lab guests' shared kernel + busybox initramfs and their xl configs in DIR.
# The guests boot the dom0's own Debian kernel (built with BTF), or, for a config marked
# "# kernel: NAME", another Debian release's kernel in DIR/kernels/NAME (xenvmi.lab.kernels),
# and a tiny busybox userland (guest-init.sh) that runs named processes, loads a module, logs
# a known kernel-log line and prints its own process list to its console: the ground truth
# for xenvmi's tests.
set -euo pipefail
DIR=${1:-/var/lib/xenvmi-lab}
DATA=$(cd "$(dirname "$0")" && pwd)
KVER=$(ls /lib/modules | sort -V | tail -n 1)
[ -n "$KVER" ] || { echo "make-guests.sh: no kernel in /lib/modules" >&2; exit 1; }
mkdir -p "$DIR"
cp -f "/boot/vmlinuz-$KVER" "$DIR/vmlinuz"
# Arm: every guest is PVH-like (xl type "pvh", a kernel Image and a device tree made by the
# toolstack) and has its own configs, in guests/arm64/; libxl boots the plain Image.
CONFIGS="$DATA/guests"
if [ "$(uname -m)" = aarch64 ]; then
  CONFIGS="$DATA/guests/arm64"
  if [ "$(head -c 2 "$DIR/vmlinuz" | od -An -tx1 | tr -d ' ')" = 1f8b ]; then
    gzip -dc "$DIR/vmlinuz" > "$DIR/Image.new" && mv "$DIR/Image.new" "$DIR/Image"
  else
    cp -f "$DIR/vmlinuz" "$DIR/Image"
  fi
fi

# initramfs KVER DUMMY_KO OUT: the busybox userland with that kernel's dummy module.
initramfs() {
  local kver=$1 mod=$2 out=$3 root
  root=$(mktemp -d)
  mkdir -p "$root"/{bin,sbin,usr/bin,proc,sys,dev,tmp,lib/modules}
  cp /bin/busybox "$root/bin/busybox"
  cp "$DATA/guest-init.sh" "$root/init"
  chmod +x "$root/init"
  # A module with no dependencies, loaded by init: `xenvmi lsmod` must find it.
  case "$mod" in
    *.ko) cp "$mod" "$root/lib/modules/dummy.ko" ;;
    *.ko.xz) xz -dc "$mod" > "$root/lib/modules/dummy.ko" ;;
    *.ko.zst) zstd -qdc "$mod" > "$root/lib/modules/dummy.ko" ;;
    *) echo "make-guests.sh: dummy.ko not found for $kver" >&2; rm -rf "$root"; exit 1 ;;
  esac
  # Named long-running processes (their comm is the script's name).
  for name in xvm-alpha xvm-beta xvm-gamma; do
    printf '#!/bin/sh\n# %s: a named process for xenvmi ground truth\nwhile :; do sleep 300; done\n' \
      "$name" > "$root/usr/bin/$name"
    chmod +x "$root/usr/bin/$name"
  done
  printf '#!/bin/sh\n# xvm-parent: a process with a child, for ppid checks\n/usr/bin/xvm-child &\nwait\n' \
    > "$root/usr/bin/xvm-parent"
  printf '#!/bin/sh\nwhile :; do sleep 300; done\n' > "$root/usr/bin/xvm-child"
  chmod +x "$root/usr/bin/xvm-parent" "$root/usr/bin/xvm-child"
  (cd "$root" && find . | cpio -o -H newc --quiet | gzip -9) > "$out.new"
  mv "$out.new" "$out"
  rm -rf "$root"
}

initramfs "$KVER" "$(find "/lib/modules/$KVER/kernel/drivers/net" -name 'dummy.ko*' | head -n 1)" \
  "$DIR/initramfs.cpio.gz"
# Kernels of other Debian releases (xenvmi.lab.kernels copies them to $DIR/kernels/NAME):
# each gets its own initramfs, for the guests whose configs name it.
for kdir in "$DIR"/kernels/*/; do
  [ -f "$kdir/vmlinuz" ] || continue
  initramfs "$(cat "$kdir/kernel-release")" "$(ls "$kdir"/dummy.ko* | head -n 1)" \
    "$kdir/initramfs.cpio.gz"
done

mkdir -p "$DIR/guests"
rm -f "$DIR"/guests/*.cfg
for cfg in "$CONFIGS"/*.cfg; do
  # "# kernel: NAME" marks a guest of another release's kernel: made only when it is here.
  k=$(sed -n 's/^# kernel: *//p' "$cfg")
  if [ -n "$k" ] && [ ! -f "$DIR/kernels/$k/vmlinuz" ]; then
    continue
  fi
  sed "s|@DIR@|$DIR|g" "$cfg" > "$DIR/guests/$(basename "$cfg")"
done
echo "$KVER" > "$DIR/kernel-release"
# What this payload was made from: `python -m xenvmi.lab.dom0 start` remakes it when the
# synced tree's guest files or the kernels differ (xenvmi.lab.paths.payload_digest).
SRC=$(cd "$DATA/../../.." && pwd)
PYTHONPATH="$SRC" python3 -c 'import sys; from xenvmi.lab.paths import payload_digest as d
print(d(sys.argv[1]))' "$DIR" > "$DIR/payload.sha256"
echo "make-guests.sh: kernel $KVER, $(ls "$DIR"/guests | wc -l) guest configs in $DIR/guests"
