/*
 * hypercalls.bpf.c: hypercalls dom0 user space makes through the privcmd driver.
 * Loaded by xenvmi/trace/hypercalls.py (bcc); `xenvmi trace hypercalls --ebpf` prints
 * the final text. Every dom0 tool (xl, libxenctrl, QEMU, xenstored, LibVMI) reaches Xen
 * through ioctl(2) on /dev/xen/privcmd, so probing privcmd_ioctl sees them all:
 *
 *   long privcmd_ioctl(struct file *file, unsigned int cmd, unsigned long data)
 *
 * kprobe: copy the ioctl argument from user memory (struct privcmd_hypercall { __u64 op;
 * __u64 arg[5]; } for IOCTL_PRIVCMD_HYPERCALL), and for domctl/sysctl the head of the
 * struct arg[0] points to, then park it per thread. kretprobe: add the return value
 * (the negative errno, in-kernel, that user space sees as -1 + errno) and the latency,
 * then send it (STREAM) and/or count it (STATS).
 *
 * Registers come only through PT_REGS_PARM2/PARM3/PT_REGS_RC, so the same text serves
 * x86-64 and arm64; structs are read with their LP64 layouts (same on both).
 *
 * The loader prepends: STREAM, STATS, FILTER_PID, FILTER_COMM, FILTER_KIND, FILTER_OP,
 * FILTER_SUBOP, FILTER_ERRORS (each optional).
 */
#include <uapi/linux/ptrace.h>

/* comm's size, as in <linux/sched.h>; not included for it: parsing that header was two
 * thirds of the compile (33 s against 11.5 s in the lab's dom0). 16 is user-space ABI
 * (prctl(PR_SET_NAME), /proc/PID/comm). */
#ifndef TASK_COMM_LEN
#define TASK_COMM_LEN 16
#endif

/* _IOC(_IOC_NONE, 'P', nr, size) of include/uapi/xen/privcmd.h (Linux 6.1) */
#define PRIVCMD_IOC(nr, size) (((size) << 16) | ('P' << 8) | (nr))
#define IOCTL_PRIVCMD_HYPERCALL     PRIVCMD_IOC(0, 48)
#define IOCTL_PRIVCMD_MMAP          PRIVCMD_IOC(2, 16)
#define IOCTL_PRIVCMD_MMAPBATCH     PRIVCMD_IOC(3, 24)
#define IOCTL_PRIVCMD_MMAPBATCH_V2  PRIVCMD_IOC(4, 32)
#define IOCTL_PRIVCMD_DM_OP         PRIVCMD_IOC(5, 16)
#define IOCTL_PRIVCMD_RESTRICT      PRIVCMD_IOC(6, 2)
#define IOCTL_PRIVCMD_MMAP_RESOURCE PRIVCMD_IOC(7, 32)
/* irqfd (8) and ioeventfd (9) arrived in Linux 6.7/6.8: named by number, not decoded. */

#define KIND_OTHER   255        /* not a privcmd ioctl we know */
#define NO_VALUE     0xffffffff /* op / subop / domid not known */

/* Hypercall numbers (public/xen.h) whose command the probe extracts. */
#define HC_MEMORY_OP  12
#define HC_SCHED_OP   29
#define HC_EVTCHN_OP  32
#define HC_HVM_OP     34
#define HC_SYSCTL     35
#define HC_DOMCTL     36
#define HC_DM_OP      41
#define MEMOP_CMD_MASK 0x3f     /* low 6 bits: command; the rest: continuation */

/* event_t.flags */
#define F_SUBOP   1
#define F_DOMID   2
#define F_VERSION 4
#define F_FAULT   8             /* a user-memory read failed: fields are partial */

struct event_t {
    u64 ts_ns;
    u64 latency_ns;
    s64 ret;
    u64 op;                     /* hypercall number, NO_VALUE if none */
    u64 args[5];
    u32 pid;
    u32 tid;
    u32 cmd;                    /* the ioctl request */
    u32 kind;                   /* the ioctl number (0 = hypercall) or KIND_OTHER */
    u32 subop;
    u32 version;                /* domctl/sysctl interface_version */
    u32 domid;
    u32 flags;
    char comm[TASK_COMM_LEN];
};

struct privcmd_hypercall_t { u64 op; u64 arg[5]; };
struct ctl_head_t { u32 cmd; u32 version; u16 domain; };   /* xen_domctl / xen_sysctl */
struct dm_op_buf_t { u64 ptr; u64 size; };                 /* privcmd_dm_op_buf, xen_dm_op_buf */

BPF_HASH(inflight, u64, struct event_t, 10240);

#ifdef STREAM
BPF_PERF_OUTPUT(events);
#endif

#ifdef STATS
struct count_key_t { u32 kind; u32 op; u32 subop; s32 err; };
struct count_val_t { u64 count; u64 total_ns; u64 max_ns; };
struct hist_key_t { u32 kind; u32 op; u64 slot; };
BPF_HASH(counts, struct count_key_t, struct count_val_t, 4096);
BPF_HISTOGRAM(dist, struct hist_key_t, 4096);
#endif

#ifdef FILTER_COMM
static __always_inline int comm_matches(const char *comm)
{
    const char want[] = FILTER_COMM;
#pragma unroll
    for (int i = 0; i < sizeof(want); i++) {
        if (comm[i] != want[i])
            return 0;
    }
    return 1;
}
#endif

static __always_inline void read_domid(struct event_t *ev, u64 uptr)
{
    u16 domid = 0;
    if (bpf_probe_read_user(&domid, sizeof(domid), (void *)uptr) == 0) {
        ev->domid = domid;
        ev->flags |= F_DOMID;
    } else {
        ev->flags |= F_FAULT;
    }
}

/* bufs[0] of a dm_op holds struct xen_dm_op, whose first u32 is the command. */
static __always_inline void read_dm_op(struct event_t *ev, u64 bufs, u64 nr_bufs)
{
    struct dm_op_buf_t buf = {};
    u32 cmd = 0;
    if (nr_bufs == 0)
        return;
    if (bpf_probe_read_user(&buf, sizeof(buf), (void *)bufs) == 0 && buf.size >= 4 &&
        bpf_probe_read_user(&cmd, sizeof(cmd), (void *)buf.ptr) == 0) {
        ev->subop = cmd;
        ev->flags |= F_SUBOP;
    } else {
        ev->flags |= F_FAULT;
    }
}

static __always_inline void read_hypercall(struct event_t *ev, u64 udata)
{
    struct privcmd_hypercall_t hc = {};
    struct ctl_head_t head = {};

    if (bpf_probe_read_user(&hc, sizeof(hc), (void *)udata) != 0) {
        ev->flags |= F_FAULT;
        return;
    }
    ev->op = hc.op;
    __builtin_memcpy(ev->args, hc.arg, sizeof(ev->args));

    switch (hc.op) {
    case HC_DOMCTL:
    case HC_SYSCTL:
        if (bpf_probe_read_user(&head, sizeof(head), (void *)hc.arg[0]) != 0) {
            ev->flags |= F_FAULT;
            break;
        }
        ev->subop = head.cmd;
        ev->version = head.version;
        ev->flags |= F_SUBOP | F_VERSION;
        if (hc.op == HC_DOMCTL) {
            ev->domid = head.domain;
            ev->flags |= F_DOMID;
        }
        break;
    case HC_MEMORY_OP:
        ev->subop = hc.arg[0] & MEMOP_CMD_MASK;
        ev->flags |= F_SUBOP;
        switch (ev->subop) {
        case 0: case 1: case 6:            /* xen_memory_reservation.domid */
            read_domid(ev, hc.arg[1] + 24);
            break;
        case 3: case 4: case 14:           /* arg is a domid_t * */
        case 7: case 15: case 23: case 28: /* struct starting with domid_t domid */
            read_domid(ev, hc.arg[1]);
            break;
        }
        break;
    case HC_HVM_OP:
        ev->subop = hc.arg[0];
        ev->flags |= F_SUBOP;
        if (hc.arg[0] <= 1)                /* set_param/get_param: xen_hvm_param.domid */
            read_domid(ev, hc.arg[1]);
        break;
    case HC_SCHED_OP:
    case HC_EVTCHN_OP:
        ev->subop = hc.arg[0];
        ev->flags |= F_SUBOP;
        break;
    case HC_DM_OP:                         /* dm_op(domid, nr_bufs, bufs) */
        ev->domid = (u16)hc.arg[0];
        ev->flags |= F_DOMID;
        read_dm_op(ev, hc.arg[2], hc.arg[1]);
        break;
    }
}

/* The other privcmd ioctls: the fields every one of them starts with. */
static __always_inline void read_other(struct event_t *ev, u64 udata)
{
    struct { s32 num; u16 dom; u16 pad; u64 addr; } batch = {};      /* mmap, mmapbatch(_v2) */
    struct { u16 dom; u16 num; u32 pad; u64 bufs; } dm = {};        /* privcmd_dm_op */
    struct { u16 dom; u16 pad; u32 type; u32 id; u32 idx; u64 num; } res = {};

    switch (ev->cmd) {
    case IOCTL_PRIVCMD_MMAP:
    case IOCTL_PRIVCMD_MMAPBATCH:
    case IOCTL_PRIVCMD_MMAPBATCH_V2:
        if (bpf_probe_read_user(&batch, sizeof(batch), (void *)udata) != 0)
            goto fault;
        ev->args[0] = (u32)batch.num;
        ev->args[1] = batch.dom;
        ev->args[2] = ev->cmd == IOCTL_PRIVCMD_MMAP ? 0 : batch.addr;
        ev->domid = batch.dom;
        ev->flags |= F_DOMID;
        break;
    case IOCTL_PRIVCMD_DM_OP:
        if (bpf_probe_read_user(&dm, sizeof(dm), (void *)udata) != 0)
            goto fault;
        ev->op = HC_DM_OP;
        ev->args[0] = dm.dom;
        ev->args[1] = dm.num;
        ev->args[2] = dm.bufs;
        ev->domid = dm.dom;
        ev->flags |= F_DOMID;
        read_dm_op(ev, dm.bufs, dm.num);
        break;
    case IOCTL_PRIVCMD_RESTRICT:
        read_domid(ev, udata);
        ev->args[0] = ev->domid;
        break;
    case IOCTL_PRIVCMD_MMAP_RESOURCE:
        if (bpf_probe_read_user(&res, sizeof(res), (void *)udata) != 0)
            goto fault;
        ev->args[0] = res.dom;
        ev->args[1] = res.type;
        ev->args[2] = res.id;
        ev->args[3] = res.idx;
        ev->args[4] = res.num;
        ev->domid = res.dom;
        ev->flags |= F_DOMID;
        break;
    }
    return;
fault:
    ev->flags |= F_FAULT;
}

int trace_entry(struct pt_regs *ctx)
{
    u64 id = bpf_get_current_pid_tgid();
    struct event_t ev = {};
    u32 cmd = (u32)PT_REGS_PARM2(ctx);
    u64 udata = (u64)PT_REGS_PARM3(ctx);

#ifdef FILTER_PID
    if ((u32)(id >> 32) != FILTER_PID)
        return 0;
#endif
    bpf_get_current_comm(&ev.comm, sizeof(ev.comm));
#ifdef FILTER_COMM
    if (!comm_matches(ev.comm))
        return 0;
#endif
    ev.pid = id >> 32;
    ev.tid = (u32)id;
    ev.cmd = cmd;
    ev.op = NO_VALUE;
    ev.subop = NO_VALUE;
    ev.domid = NO_VALUE;
    ev.kind = ((cmd >> 8) & 0xff) == 'P' && (cmd & 0xff) <= 9 ? (cmd & 0xff) : KIND_OTHER;

    if (cmd == IOCTL_PRIVCMD_HYPERCALL)
        read_hypercall(&ev, udata);
    else if (ev.kind != KIND_OTHER)
        read_other(&ev, udata);

#ifdef FILTER_KIND
    if (ev.kind != FILTER_KIND)
        return 0;
#endif
#ifdef FILTER_OP
    if (ev.op != FILTER_OP)
        return 0;
#endif
#ifdef FILTER_SUBOP
    if (!(ev.flags & F_SUBOP) || ev.subop != FILTER_SUBOP)
        return 0;
#endif
    ev.ts_ns = bpf_ktime_get_ns();
    inflight.update(&id, &ev);
    return 0;
}

int trace_return(struct pt_regs *ctx)
{
    u64 id = bpf_get_current_pid_tgid();
    struct event_t *ev = inflight.lookup(&id);
    s64 ret = PT_REGS_RC(ctx);

    if (ev == 0)
        return 0;          /* entry filtered out, or missed */
#ifdef FILTER_ERRORS
    if (ret >= 0 || ret < -4095) {
        inflight.delete(&id);
        return 0;
    }
#endif
    ev->ret = ret;
    ev->latency_ns = bpf_ktime_get_ns() - ev->ts_ns;

#ifdef STATS
    struct count_key_t key = {};
    struct count_val_t zero = {}, *val;
    struct hist_key_t hkey = {};

    key.kind = ev->kind;
    key.op = (u32)ev->op;
    key.subop = (ev->flags & F_SUBOP) ? ev->subop : NO_VALUE;
    key.err = (ret < 0 && ret >= -4095) ? (s32)ret : 0;
    val = counts.lookup_or_try_init(&key, &zero);
    if (val) {
        __sync_fetch_and_add(&val->count, 1);
        __sync_fetch_and_add(&val->total_ns, ev->latency_ns);
        if (ev->latency_ns > val->max_ns)
            val->max_ns = ev->latency_ns;
    }
    hkey.kind = ev->kind;
    hkey.op = (u32)ev->op;
    hkey.slot = bpf_log2l(ev->latency_ns / 1000);
    dist.increment(hkey);
#endif
#ifdef STREAM
    events.perf_submit(ctx, ev, sizeof(*ev));
#endif
    inflight.delete(&id);
    return 0;
}
