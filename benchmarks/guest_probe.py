import time, sys
from xenvmi.backends.libvmi import LibvmiMemory
from xenvmi.guest import discover, program, linux, printk
from xenvmi.guest.bounded import Budget
t=time.monotonic()
m = LibvmiMemory(sys.argv[1])
print("open", round(time.monotonic()-t,2), m.name, m.domid, m.uuid, m.kind, hex(m.max_physical_address), hex(m.memsize), hex(m.ram_top))
t=time.monotonic()
d = discover.discover(m, progress=print, use_cache=len(sys.argv) > 2)
print("disc", round(time.monotonic()-t,2), hex(d.note_address), d.info.osrelease, hex(d.info.kernel_offset), hex(d.info.phys_base), d.sources, d.warnings, m.stats)
t=time.monotonic()
kp = program.build(m, d, progress=print)
print("build", round(time.monotonic()-t,2), kp.timings, kp.symbols, kp.btf_size, kp.warnings, m.stats)
for name in ("_text", "start_kernel", "init_task", "jiffies"):
    try: print(name, kp.prog.symbol(name))
    except LookupError as e: print(name, e)
for fn in (linux.processes, linux.modules, printk.kernel_log):
    t=time.monotonic(); b = kp.view(60)
    rows = fn(kp, b)
    print(fn.__name__, round(time.monotonic()-t,2), len(rows), b.complete, b.warnings)
    for r in rows[:8] + rows[-5:]: print("  ", r)
print(linux.kernel_info(kp, Budget()))
