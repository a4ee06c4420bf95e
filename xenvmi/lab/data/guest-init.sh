#!/bin/busybox sh
# init of every xenvmi lab guest (busybox, no agent). Prints the ground truth that xenvmi's
# tests compare with what they read through VMI: the process list, the loaded modules and a
# known kernel-log line, framed by XENVMI-* markers, to the guest's console every few seconds.
/bin/busybox --install -s /bin
export PATH=/usr/bin:/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
NAME=unknown
for arg in $(cat /proc/cmdline); do
  case "$arg" in xenvmi.name=*) NAME=${arg#xenvmi.name=} ;; esac
done
hostname "$NAME"
insmod /lib/modules/dummy.ko
echo "xenvmi-lab: guest $NAME is up" > /dev/kmsg
/usr/bin/xvm-alpha &
/usr/bin/xvm-beta --role worker &
/usr/bin/xvm-gamma &
/usr/bin/xvm-parent &
echo "XENVMI-INIT-DONE $NAME"
n=0
while :; do
  n=$((n + 1))
  echo "XENVMI-REPORT-BEGIN $NAME $n $(cut -d' ' -f1 /proc/uptime)"
  echo "XENVMI-RELEASE $(uname -r)"
  echo "XENVMI-MODULES $(cut -d' ' -f1 /proc/modules | tr '\n' ' ')"
  # Where the kernel text really is: minus 0xffffffff81000000 it is the KASLR slide.
  echo "XENVMI-KTEXT $(grep -m1 ' _text$' /proc/kallsyms | cut -d' ' -f1)"
  for d in /proc/[0-9]*; do
    [ -r "$d/stat" ] || continue
    read -r stat < "$d/stat" 2>/dev/null || continue
    # stat: pid (comm) state ppid ... ; our comms have no spaces or parentheses.
    set -- $stat
    echo "XENVMI-PS $1 $4 $2"
  done
  echo "XENVMI-REPORT-END $NAME $n"
  sleep 10
done
