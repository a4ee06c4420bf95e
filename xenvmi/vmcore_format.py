"""The ELF vmcore layout xenvmi writes (guest.vmcore) and reads (backends.dumpfile): kdump's
ELF core with NT_PRSTATUS per vCPU, the kernel's VMCOREINFO note and xenvmi's own notes.
Constants only, so that the writer and the reader cannot disagree and neither imports
the other's side of the wall."""

EHDR, PHDR = 64, 56
PT_LOAD, PT_NOTE, ET_CORE, EM_X86_64, NT_PRSTATUS = 1, 4, 4, 62, 1
EM_AARCH64 = 183
#: The guest architectures (GuestMemory.arch) and their ELF machine numbers.
MACHINES = {"x86_64": EM_X86_64, "aarch64": EM_AARCH64}
#: xenvmi's own notes (name "XENVMI"): the VMCOREINFO note's guest-physical address (u64),
#: and one vCPU's registers as ``name=0xvalue`` lines after a ``vcpu=N`` line.
XENVMI_NOTE = b"XENVMI\x00"
NT_XENVMI_VMCOREINFO_ADDRESS, NT_XENVMI_REGISTERS = 1, 2
MAX_REGISTERS = 256
#: struct user_regs_struct (x86-64), the pr_reg of NT_PRSTATUS, in order.
USER_REGS = (
    "r15",
    "r14",
    "r13",
    "r12",
    "rbp",
    "rbx",
    "r11",
    "r10",
    "r9",
    "r8",
    "rax",
    "rcx",
    "rdx",
    "rsi",
    "rdi",
    "orig_rax",
    "rip",
    "cs",
    "eflags",
    "rsp",
    "ss",
    "fs_base",
    "gs_base",
    "ds",
    "es",
    "fs",
    "gs",
)
PRSTATUS_SIZE, PR_REG = 336, 112
#: arm64's pr_reg (struct user_pt_regs: x0-x30, sp, pc, pstate) and struct elf_prstatus
#: size (Linux's arch/arm64/include/uapi/asm/ptrace.h; QEMU's dump writes the same 392).
ARM64_USER_REGS = (*(f"x{n}" for n in range(31)), "sp", "pc", "pstate")
ARM64_PRSTATUS_SIZE = 392
U64 = (1 << 64) - 1
#: The largest VMCOREINFO note text accepted: the kernel's VMCOREINFO_BYTES is one page;
#: a large page is allowed.
MAX_VMCOREINFO_DESC = 16384
