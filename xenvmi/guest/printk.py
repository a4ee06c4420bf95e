"""The kernel log in both of its formats, read in bulk and bounded.

Linux 5.10+ keeps it in the lockless printk ring buffer (``prb``). drgn's own helper walks
from ``tail_id`` until it meets ``head_id``: a guest that scribbles a bogus head id makes
that loop run ~2**62 times. Here the walk visits each descriptor slot at most once, the
three arrays are read in one go each (descriptors, infos, text ring: a few hundred KiB,
instead of thousands of tiny reads), and every record's text position is checked against
the ring's size.

Linux 3.5-5.9 keeps ``struct printk_log`` records back to back in ``log_buf`` (a record of
length 0 sends the reader back to the start). The buffer is read once and walked from
``log_first_idx`` to ``log_next_idx``, every record's length checked against the buffer;
the record layout comes from the kernel's types or, without them, from VMCOREINFO's
``SIZE(printk_log)`` and ``OFFSET(printk_log.*)``, which those kernels write for crash tools.
"""

from __future__ import annotations

import struct

import drgn

from xenvmi import safetext
from xenvmi.guest.bounded import Budget, DeadlineExceeded, is_kernel_pointer
from xenvmi.model.guest import LogRecord

MAX_COUNT_BITS = 20  # CONFIG_LOG_BUF_SHIFT <= 25 gives <= 2**20 descriptors
MAX_TEXT_BITS = 25
ID_MASK = (1 << 62) - 1  # DESC_ID_MASK on 64-bit
DESC_COMMITTED, DESC_FINALIZED = 1, 2  # enum desc_state (kernel/printk/printk_ringbuffer.h)


def _offsets(typ: drgn.Type, *names: str) -> dict[str, tuple[int, int]]:
    """(bit offset, bit size) of each named (possibly nested, dotted) member."""
    out = {}
    for name in names:
        off = 0
        t = typ
        for part in name.split("."):
            m = t.member(part)
            off += m.bit_offset
            t = m.type
        bits = m.bit_field_size or drgn.sizeof(t) * 8
        out[name] = (off, bits)
    return out


def _get(buf: bytes, base: int, field: tuple[int, int]) -> int:
    off, bits = field
    start = base + off // 8
    nbytes = (off % 8 + bits + 7) // 8
    raw = int.from_bytes(buf[start : start + nbytes], "little")
    return (raw >> (off % 8)) & ((1 << bits) - 1)


def _text(data: bytes, begin: int, nxt: int, size_bits: int, rid: int) -> bytes | None:
    """The text block of record ``rid`` (the kernel's get_data()), None if not sane."""
    if begin & 1 or nxt & 1:  # data-less record (FAILED_LPOS / NO_LPOS)
        return b""
    size = 1 << size_bits
    wb, wn = begin >> size_bits, nxt >> size_bits
    if wb == wn and begin < nxt:
        start, length = begin & (size - 1), nxt - begin
    elif (begin + size) >> size_bits == wn:
        start, length = 0, nxt & (size - 1)
    else:
        return None
    if not 8 <= length <= size or start + length > len(data):
        return None
    if int.from_bytes(data[start : start + 8], "little") & ID_MASK != rid:
        return None  # a block starts with its descriptor's id: this one was overwritten
    return data[start + 8 : start + length]


def kernel_log(kp, budget: Budget) -> list[LogRecord]:
    """All committed records of the printk ring buffer, oldest first (bounded)."""
    prog = kp.prog
    try:
        prb_ptr = prog["prb"].value_()
    except LookupError:
        return legacy_kernel_log(kp, budget)
    except drgn.FaultError as e:
        budget.warn(f"kernel log: prb unreadable: {e}")
        return []
    if not is_kernel_pointer(prb_ptr):
        budget.warn(f"prb points to {prb_ptr:#x}, not a kernel address")
        return []
    try:
        return _read(prog, prog.object("prb")[0].read_(), budget)
    except DeadlineExceeded:
        budget.warn("kernel log: stopped at the deadline")
        return []
    except (drgn.FaultError, LookupError, ValueError) as e:
        budget.warn(f"kernel log unreadable: {e}")
        return []


def _read(prog: drgn.Program, rb: drgn.Object, budget: Budget) -> list[LogRecord]:
    ring, text_ring = rb.desc_ring, rb.text_data_ring
    count_bits = ring.count_bits.value_()
    size_bits = text_ring.size_bits.value_()
    if not 0 < count_bits <= MAX_COUNT_BITS or not 8 < size_bits <= MAX_TEXT_BITS:
        budget.warn(
            f"kernel log: implausible ring sizes (count_bits={count_bits}, size_bits={size_bits})"
        )
        return []
    descs, infos, data_ptr = (ring.descs.value_(), ring.infos.value_(), text_ring.data.value_())
    for name, ptr in (("descs", descs), ("infos", infos), ("text data", data_ptr)):
        if not is_kernel_pointer(ptr):
            budget.warn(f"kernel log: {name} pointer {ptr:#x} is not a kernel address")
            return []
    n = 1 << count_bits
    desc_t, info_t = prog.type("struct prb_desc"), prog.type("struct printk_info")
    dsz, isz = drgn.sizeof(desc_t), drgn.sizeof(info_t)
    df = _offsets(desc_t, "state_var", "text_blk_lpos.begin", "text_blk_lpos.next")
    inf = _offsets(info_t, "seq", "ts_nsec", "text_len", "facility", "level", "caller_id")
    dbuf = prog.read(descs, n * dsz)
    ibuf = prog.read(infos, n * isz)
    data = prog.read(data_ptr, 1 << size_bits)
    head = ring.head_id.counter.value_() & ID_MASK
    cur = ring.tail_id.counter.value_() & ID_MASK
    out: list[LogRecord] = []
    bad = 0
    for step in range(n + 1):
        if step % 256 == 0:
            budget.check()
        idx = cur & (n - 1)
        sv = struct.unpack_from("<Q", dbuf, idx * dsz + df["state_var"][0] // 8)[0]
        if sv & ID_MASK == cur and (sv >> 62) & 3 in (DESC_COMMITTED, DESC_FINALIZED):
            base = idx * isz
            text = _text(
                data,
                _get(dbuf, idx * dsz, df["text_blk_lpos.begin"]),
                _get(dbuf, idx * dsz, df["text_blk_lpos.next"]),
                size_bits,
                cur,
            )
            if text is None:
                bad += 1
            else:
                text = text[: _get(ibuf, base, inf["text_len"])].rstrip(b"\x00")
                caller = _get(ibuf, base, inf["caller_id"])
                out.append(
                    LogRecord(
                        seq=_get(ibuf, base, inf["seq"]),
                        timestamp=_get(ibuf, base, inf["ts_nsec"]) / 1e9,
                        level=_get(ibuf, base, inf["level"]),
                        facility=_get(ibuf, base, inf["facility"]),
                        text=_clean(text),
                        caller=_caller(caller),
                    )
                )
        if cur == head:
            break
        cur = (cur + 1) & ID_MASK
    else:
        budget.warn(
            f"kernel log: head id {head:#x} not reached from the tail in {n} slots "
            "(bogus ring index); showing what was found"
        )
    if bad:
        budget.warn(f"kernel log: {bad} record(s) with an impossible text position skipped")
    return out


#: Linux 5.9's struct printk_log without types: offsets after ``dict_len`` (u16) are its
#: ``u8 facility`` then ``u8 flags:5, level:3`` (kernel/printk/printk.c, 3.5-5.9).
LEGACY_MIN_HEADER = 16
MAX_LOG_BUF = 1 << 25  # CONFIG_LOG_BUF_SHIFT <= 25
#: Records start and end on __alignof__(struct printk_log): 4 (packed, aligned(4)) where
#: unaligned access is cheap, as on x86 and arm64; 8 elsewhere. Both are multiples of 4.
LOG_ALIGN = 4


#: struct printk_log's members the walk reads; the first three are required.
LEGACY_FIELDS = ("ts_nsec", "len", "text_len", "facility", "level", "caller_id")


def legacy_layout(prog: drgn.Program, fields: dict[str, str]) -> dict | None:
    """struct printk_log's size and its members' (bit offset, bit size), as ``_get``
    reads them: from the kernel's types if they have the struct, else from VMCOREINFO;
    None if neither describes it. A member that would lie past the record is left out."""
    try:
        t = prog.type("struct printk_log")
    except LookupError:
        t = None
    if t is not None:
        names = {m.name for m in t.members}
        size = drgn.sizeof(t)
        members = _offsets(t, *(n for n in LEGACY_FIELDS if n in names))
    else:
        try:
            size = int(fields["SIZE(printk_log)"])
            off = {
                n: int(fields[f"OFFSET(printk_log.{n})"])
                for n in ("ts_nsec", "len", "text_len", "dict_len")
            }
        except (KeyError, ValueError):
            return None
        members = {
            "ts_nsec": (off["ts_nsec"] * 8, 64),
            "len": (off["len"] * 8, 16),
            "text_len": (off["text_len"] * 8, 16),
            "facility": ((off["dict_len"] + 2) * 8, 8),
            "level": ((off["dict_len"] + 3) * 8 + 5, 3),
        }
        try:
            members["caller_id"] = (int(fields["OFFSET(printk_log.caller_id)"]) * 8, 32)
        except (KeyError, ValueError):
            pass
    members = {n: f for n, f in members.items() if sum(f) <= size * 8}
    if not {"ts_nsec", "len", "text_len"} <= members.keys():
        return None
    return {"size": size, **members}


def _u(prog: drgn.Program, name: str) -> int:
    return prog[name].value_()


def legacy_kernel_log(kp, budget: Budget) -> list[LogRecord]:
    """All records of a Linux 3.5-5.9 ``log_buf``, oldest first (bounded)."""
    prog = kp.prog
    layout = legacy_layout(prog, kp.vmcoreinfo.fields if kp.vmcoreinfo is not None else {})
    if layout is None:
        budget.warn(
            "kernel log: neither a printk ring buffer (prb) nor a described "
            "log_buf (struct printk_log in BTF or VMCOREINFO) in this kernel"
        )
        return []
    try:
        buf_ptr, buf_len = _u(prog, "log_buf"), _u(prog, "log_buf_len")
        idx, end = _u(prog, "log_first_idx"), _u(prog, "log_next_idx")
    except (LookupError, drgn.FaultError) as e:
        budget.warn(f"kernel log: log_buf's indexes unreadable: {e}")
        return []
    try:
        seq = _u(prog, "log_first_seq")
    except (LookupError, drgn.FaultError):
        seq = 0
    head = layout["size"]
    # __log_buf is aligned to LOG_ALIGN only (4 on x86: efficient unaligned access)
    if not is_kernel_pointer(buf_ptr, LOG_ALIGN) or not head <= buf_len <= MAX_LOG_BUF:
        budget.warn(f"kernel log: implausible log_buf {buf_ptr:#x} of {buf_len} bytes")
        return []
    if not LEGACY_MIN_HEADER <= head <= 64 or idx >= buf_len or end >= buf_len:
        budget.warn(f"kernel log: implausible indexes {idx}..{end} or record size {head}")
        return []
    try:
        buf = kp.read(buf_ptr, buf_len)
    except drgn.FaultError as e:
        budget.warn(f"kernel log: log_buf unreadable: {e}")
        return []
    try:
        return _walk_legacy(buf, idx, end, seq, layout, budget)
    except DeadlineExceeded:
        budget.warn("kernel log: stopped at the deadline")
        return []


def _walk_legacy(
    buf: bytes, idx: int, end: int, seq: int, layout: dict, budget: Budget
) -> list[LogRecord]:
    head, size = layout["size"], len(buf)
    out: list[LogRecord] = []
    wrapped = False
    for step in range(size // head + 2):
        if step % 256 == 0:
            budget.check()
        if idx == end:
            return out
        if idx % LOG_ALIGN or idx + head > size:
            break
        length = _get(buf, idx, layout["len"])
        if length == 0:  # the end-of-buffer marker: the next record is at the start
            if wrapped:
                break
            idx, wrapped = 0, True
            continue
        text_len = _get(buf, idx, layout["text_len"])
        if length < head or length % LOG_ALIGN or idx + length > size or head + text_len > length:
            break
        ts = _get(buf, idx, layout["ts_nsec"])
        level = _get(buf, idx, layout["level"]) if "level" in layout else 0
        facility = _get(buf, idx, layout["facility"]) if "facility" in layout else 0
        caller = _caller(_get(buf, idx, layout["caller_id"])) if "caller_id" in layout else None
        text = buf[idx + head : idx + head + text_len]
        out.append(
            LogRecord(
                seq=seq,
                timestamp=ts / 1e9,
                level=level,
                facility=facility,
                text=_clean(text),
                caller=caller,
            )
        )
        seq += 1
        idx += length
    budget.warn(
        f"kernel log: log_buf's records do not lead from the first index to the "
        f"next ({end}); showing the {len(out)} found"
    )
    return out


def _caller(caller_id: int) -> str:
    """printk's caller id as dmesg shows it: a CPU ("C0") or a task ("T123")."""
    return f"C{caller_id & 0x7FFFFFFF}" if caller_id & 0x80000000 else f"T{caller_id}"


def _clean(text: bytes) -> str:
    """A record's text, safe to print: a newline or ESC in it is shown escaped, as
    /dev/kmsg shows it, so a guest cannot forge log lines or drive the terminal."""
    return safetext.decode(text)
