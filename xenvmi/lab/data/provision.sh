#!/usr/bin/env bash
# Turn a Debian bookworm system into a Xen 4.17 dom0 ready for xenvmi, with the lab guests.
#
# The ONE provisioning script, shared by both labs:
#   * the QEMU lab (`xenvmi lab up`) runs it inside a chroot of a debootstrap tree:
#       provision.sh --image --src /opt/xenvmi/src --wheels /opt/xenvmi/wheels
#   * Vagrant (vagrant/Vagrantfile) runs it on a booted Debian VM:
#       provision.sh --src /vagrant   (then reboot into Xen; guests start on boot)
# It is idempotent: running it twice changes nothing the second time.
set -euo pipefail

MODE=host
SRC=/opt/xenvmi/src
WHEELS=""
while [ $# -gt 0 ]; do
  case "$1" in
    --image) MODE=image ;;
    --src) SRC=$2; shift ;;
    --wheels) WHEELS=$2; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "provision.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
[ "$(id -u)" = 0 ] || { echo "provision.sh: must run as root" >&2; exit 4; }
DATA=$(cd "$(dirname "$0")" && pwd)
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8

step() { echo "== provision: $*"; }

PACKAGES=(
  xen-hypervisor-4.17-amd64 xen-utils-4.17 xenstore-utils libxen-dev qemu-system-xen
  linux-image-amd64 linux-headers-amd64 libglib2.0-0 bpfcc-tools python3-bpfcc pahole
  python3 python3-venv openssh-server iproute2 kmod udev systemd-sysv busybox-static cpio
  xz-utils tmux procps less ca-certificates
)

if [ "$MODE" = image ]; then
  # No daemon may start inside the build chroot.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
fi

step "packages"
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

step "xen toolstack settings"
# Log every guest's console (PV/PVH hvc0) to /var/log/xen/console/guest-NAME.log: the lab
# guests print their own process list there, the ground truth for xenvmi's tests.
# Debian's /etc/init.d/xen passes XENCONSOLED_ARGS (it ignores XENCONSOLED_TRACE).
mkdir -p /var/log/xen/console
sed -i '/^XENCONSOLED_ARGS=/d' /etc/default/xen
echo 'XENCONSOLED_ARGS="--log=guest --log-dir=/var/log/xen/console"' >> /etc/default/xen
# libvmi dlopens the unversioned libxenctrl.so / libxenstore.so (shipped by libxen-dev).

step "lab guests"
bash "$DATA/make-guests.sh" /var/lib/xenvmi-lab

step "python environment"
VENV=/opt/xenvmi/venv
[ -x "$VENV/bin/python" ] || python3 -m venv --system-site-packages "$VENV"
pipargs=()
[ -n "$WHEELS" ] && pipargs=(--no-index --find-links "$WHEELS")
"$VENV/bin/pip" install -q "${pipargs[@]}" --config-settings editable_mode=compat \
  -e "$SRC[dom0,test]"
ln -sf "$VENV/bin/xenvmi" /usr/local/bin/xenvmi

if [ "$MODE" = image ]; then
  step "image settings (QEMU lab)"
  echo xenvmi-lab > /etc/hostname
  echo '/dev/vda / ext4 rw,errors=remount-ro 0 1' > /etc/fstab
  mkdir -p /etc/systemd/network
  printf '[Match]\nName=en* eth*\n[Network]\nDHCP=yes\n' > /etc/systemd/network/80-dhcp.network
  systemctl enable systemd-networkd >/dev/null 2>&1
  echo 'nameserver 10.0.2.3' > /etc/resolv.conf
  # A root shell on the Xen console, for debugging through the serial log.
  systemctl enable serial-getty@hvc0.service >/dev/null 2>&1 || true
  sed -i 's/^#\?UseDNS.*/UseDNS no/' /etc/ssh/sshd_config
  rm -f /usr/sbin/policy-rc.d /boot/*.dpkg-bak /boot/*.new
  apt-get clean
else
  step "boot entry (real host)"
  # Xen first in GRUB, with a fixed dom0 memory so guests have room.
  if [ -f /etc/default/grub ]; then
    grep -q '^GRUB_CMDLINE_XEN_DEFAULT=' /etc/default/grub \
      || echo 'GRUB_CMDLINE_XEN_DEFAULT="dom0_mem=1536M,max:1536M loglvl=all guest_loglvl=all"' >> /etc/default/grub
    update-grub
  fi
  # Start the lab guests on every boot of the real host.
  cat > /etc/systemd/system/xenvmi-lab-guests.service <<EOF
[Unit]
Description=xenvmi lab guests
After=xen.service xendomains.service
ConditionPathExists=/proc/xen/capabilities

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=$VENV/bin/python -m xenvmi.lab.dom0 start

[Install]
WantedBy=multi-user.target
EOF
  systemctl enable xenvmi-lab-guests.service
fi
step "done"
