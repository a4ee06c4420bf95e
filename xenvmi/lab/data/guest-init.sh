#!/bin/busybox sh
# init of every xenvmi lab guest (busybox, no agent). Prints the ground truth that xenvmi's
# tests compare with what they read through VMI: the process list, the loaded modules and a
# known kernel-log line, framed by XENVMI-* markers, to the guest's Xen console (hvc0) when
# dom0 asks for one (a line written to the console's pty: xenvmi.lab.dom0.request_report)
# and every REPORT_EVERY seconds otherwise. Waiting on the console costs nothing: a report
# loop on a timer cost each guest 8-15 % of the lab's one emulated CPU.
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
REPORT_EVERY=600
# Reports and requests go through Xen's PV console: on PV/PVH it is also the kernel's
# console; the HVM guest's kernel console is its emulated serial port, which takes no input.
CON=/dev/hvc0
[ -c "$CON" ] || CON=/dev/console
exec 3<>"$CON" 1>&3 2>&3
stty -echo <&3 2>/dev/null
insmod /lib/modules/dummy.ko
echo "xenvmi-lab: guest $NAME is up" > /dev/kmsg
# Text a hostile guest plants for whoever reads it (xenvmi must show it escaped, never
# raw): a clear-screen, a window title, a bell, a right-to-left override and a byte that
# is not UTF-8, in a kernel log record (level 7: not echoed to the console) and in a
# process's command line.
HOSTILE=$(printf 'ok\033[2J\033]0;owned\007\342\200\256evil\377')
printf '<7>xenvmi-lab: hostile %s end\n' "$HOSTILE" > /dev/kmsg
# The named processes write to the PV console too, without init's request fd (3).
/usr/bin/xvm-alpha 3<&- &
/usr/bin/xvm-beta --role worker 3<&- &
/usr/bin/xvm-gamma "$HOSTILE" 3<&- &
/usr/bin/xvm-parent 3<&- &
echo "XENVMI-INIT-DONE $NAME"
n=0
while :; do
  n=$((n + 1))
  echo "XENVMI-REPORT-BEGIN $NAME $n $(cut -d' ' -f1 /proc/uptime)"
  echo "XENVMI-RELEASE $(uname -r)"
  echo "XENVMI-MODULES $(cut -d' ' -f1 /proc/modules | tr '\n' ' ')"
  # Where the kernel text really is: minus 0xffffffff81000000 it is the KASLR slide.
  echo "XENVMI-KTEXT $(grep -m1 ' _text$' /proc/kallsyms | cut -d' ' -f1)"
  # arm64 kallsyms has no _text: its _stext is 64 KiB (one segment) past the image start.
  echo "XENVMI-KSTEXT $(grep -m1 ' _stext$' /proc/kallsyms | cut -d' ' -f1)"
  for d in /proc/[0-9]*; do
    [ -r "$d/stat" ] || continue
    read -r stat < "$d/stat" 2>/dev/null || continue
    # stat: pid (comm) state ppid ... ; our comms have no spaces or parentheses.
    set -- $stat
    echo "XENVMI-PS $1 $4 $2"
  done
  echo "XENVMI-REPORT-END $NAME $n"
  # A request line or the timer; a console that fails at once must not spin.
  read -t "$REPORT_EVERY" request <&3 || sleep 5
done
