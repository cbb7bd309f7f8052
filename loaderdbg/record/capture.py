"""Write capture: which memory an instruction or a syscall changes.

Instructions are decoded once per address (capstone operand access) into a
``Plan``: a tuple the recorder's step loop can act on without calling
capstone again. Each memory write becomes a rule
``(base_off, index_off, scale, disp, seg_off, size, mask)`` over the raw
``user_regs_struct`` bytes *before* the step:

    address = ((base + index*scale + disp) & mask) + segment_base

rip-relative operands fold the next instruction's address into ``disp``. The
recorder reads the written bytes after the step with one pread.

Capstone 5's access flags miss several stores (``vmovdqu [m], ymm``,
``lock cmpxchg``, ``stmxcsr`` come back as reads), so a memory operand in the
destination slot (operand 0) counts as written unless the mnemonic is known
to only read it (cmp, test, push, jmp…). Rules of our own cover what capstone
does not list: push/call/pushf/enter stack writes, the xsave family (size
from the recorded XCR0 state), fnsave, pop to memory (addressed after rsp
moves), and ``rep`` string ops, which write one element per single-step and
nothing when rcx is 0. Instructions we cannot address (scatters,
movdir64b, clzero, int 0x80) get the COMPLEX plan: the recorder compares all
writable memory with its shadow after them.

Syscalls: ``SYSCALL_OUTPUTS`` says, per syscall, which argument buffers the
kernel fills and how big they are; ``SYSCALL_NO_WRITES`` lists the ones
that write no user memory; anything else is diffed like a COMPLEX step.
"""

from __future__ import annotations

import capstone
from capstone import x86 as cs_x86

from loaderdbg.arch.x86_64 import USER_REGS_FIELDS

MASK64 = (1 << 64) - 1
MASK32 = 0xFFFF_FFFF

# Plan kinds.
PLAIN, WRITES, SYSCALL, INT3, COMPLEX = range(5)
KIND_NAMES = ("plain", "writes", "syscall", "int3", "complex")

REG_INDEX = {name: i for i, name in enumerate(USER_REGS_FIELDS)}
# A write mask naming every register: a step whose writes are not known
# one by one (a syscall's, a signal's, an exit's) may have changed any.
ALL_REGISTERS = (1 << len(USER_REGS_FIELDS)) - 1
REG_OFFSET = {name: 8 * i for i, name in enumerate(USER_REGS_FIELDS)}
RSP = REG_OFFSET["rsp"]
RCX = REG_OFFSET["rcx"]
RIP = REG_OFFSET["rip"]
SEGMENT_BASES = {"fs": REG_OFFSET["fs_base"], "gs": REG_OFFSET["gs_base"]}


def _gpr_views() -> dict[str, tuple[str, int]]:
    """Every name capstone gives a general-purpose register -> (user_regs
    field, address mask when used as a base/index)."""
    views: dict[str, tuple[str, int]] = {}
    for short in ("ax", "bx", "cx", "dx"):
        full = "r" + short
        views.update({full: (full, MASK64), "e" + short: (full, MASK32), short: (full, 0xFFFF),
                      short[0] + "l": (full, 0xFF), short[0] + "h": (full, 0xFF)})
    for short in ("si", "di", "bp", "sp"):
        full = "r" + short
        views.update({full: (full, MASK64), "e" + short: (full, MASK32), short: (full, 0xFFFF),
                      short + "l": (full, 0xFF)})
    for n in range(8, 16):
        full = f"r{n}"
        views.update({full: (full, MASK64), full + "d": (full, MASK32), full + "w": (full, 0xFFFF),
                      full + "b": (full, 0xFF)})
    views.update({"rip": ("rip", MASK64), "eip": ("rip", MASK32),
                  "rflags": ("eflags", MASK64), "eflags": ("eflags", MASK64), "flags": ("eflags", MASK64),
                  "fs": ("fs", MASK64), "gs": ("gs", MASK64)})
    return views


GPR_VIEWS = _gpr_views()


def register_bit(name: str) -> int:
    """Bit of a register (any view of it) in a regs-written mask, or 0."""
    view = GPR_VIEWS.get(name)
    return 1 << REG_INDEX[view[0]] if view else 0


def full_register(name: str) -> str | None:
    view = GPR_VIEWS.get(name)
    return view[0] if view else None


# Prefix words capstone folds into the mnemonic.
_PREFIX_WORDS = frozenset({"rep", "repe", "repne", "repz", "repnz", "lock", "notrack", "bnd",
                           "xacquire", "xrelease"})

# Instructions whose memory operand in the destination slot is only read.
READ_ONLY_FIRST = frozenset({
    "cmp", "test", "bt", "push", "jmp", "call", "ljmp", "lcall", "ptwrite", "bound",
    "fld", "fild", "fldcw", "fldenv", "frstor", "fbld", "fxrstor", "fxrstor64",
    "xrstor", "xrstor64", "xrstors", "xrstors64", "ldmxcsr", "vldmxcsr",
    "prefetch", "prefetchw", "prefetchwt1", "prefetcht0", "prefetcht1", "prefetcht2", "prefetchnta",
    "prefetchit0", "prefetchit1", "clflush", "clflushopt", "clwb", "cldemote", "invlpg", "nop",
    "lgdt", "lidt", "lldt", "ltr", "lmsw", "verr", "verw", "mul", "div", "idiv",
    "fadd", "fsub", "fsubr", "fmul", "fdiv", "fdivr", "fcom", "fcomp", "ficom", "ficomp",
    "fiadd", "fisub", "fisubr", "fimul", "fidiv", "fidivr", "cmpsb", "cmpsw", "cmpsd", "cmpsq",
    "lea", "monitor", "umonitor", "vbroadcastss", "vbroadcastsd", "endbr64",
    "ucomiss", "ucomisd", "comiss", "comisd", "vucomiss", "vucomisd", "vcomiss", "vcomisd",
    "ptest", "vptest", "vtestps", "vtestpd", "kortestw", "ktestw",
})
# One-operand imul reads its memory operand; two/three-operand forms have a
# register destination anyway.
READ_ONLY_FIRST |= {"imul"}

XSAVE_MNEMONICS = frozenset({"xsave", "xsave64", "xsavec", "xsavec64", "xsaveopt", "xsaveopt64",
                             "xsaves", "xsaves64"})
FIXED_STORE_SIZES = {"fxsave": 512, "fxsave64": 512, "fnsave": 108, "fsave": 108,
                     "fnstenv": 28, "fstenv": 28}
# Implicit stack writes: mnemonic -> (offset from rsp before, size).
IMPLICIT_STACK = {"push": (-8, 8), "pushfq": (-8, 8), "call": (-8, 8), "pushf": (-2, 2)}
# Stores at an address capstone does not list as an operand: -> (register, size).
IMPLICIT_DESTINATION = {"maskmovq": ("rdi", 8), "maskmovdqu": ("rdi", 16), "vmaskmovdqu": ("rdi", 16)}
# Writes we cannot address from general registers.
COMPLEX_MNEMONICS = frozenset({"movdir64b", "clzero", "enqcmd", "enqcmds", "sysenter", "int1", "into",
                               "xbegin", "wrssd", "wrssq", "wrussd", "wrussq", "rstorssp", "saveprevssp"})
STRING_STORES = ("stos", "movs", "ins")


def base_mnemonic(mnemonic: str) -> str:
    words = mnemonic.split()
    while len(words) > 1 and words[0] in _PREFIX_WORDS:
        words.pop(0)
    return words[0] if words else mnemonic


class Plan(tuple):
    """(kind, writes, wmask, rep, size, text): what one instruction does to
    memory. A tuple so the step loop unpacks it with no attribute lookups."""

    __slots__ = ()

    def __new__(cls, kind: int, writes: tuple = (), wmask: int = 0, rep: bool = False, size: int = 0,
                text: str = ""):
        return super().__new__(cls, (kind, writes, wmask, rep, size, text))

    kind = property(lambda self: self[0])
    writes = property(lambda self: self[1])
    wmask = property(lambda self: self[2])
    rep = property(lambda self: self[3])
    size = property(lambda self: self[4])
    text = property(lambda self: self[5])


UNDECODABLE = Plan(COMPLEX, text="(bad)")


class Decoder:
    """Instruction bytes -> Plan, with capstone's detail on. ``xsave_size``
    is the XSAVE area size of the traced machine (CPUID 0xD / the kernel's
    NT_X86_XSTATE size), used for the xsave family."""

    def __init__(self, xsave_size: int = 4096) -> None:
        self.xsave_size = xsave_size
        self._cs = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
        self._cs.detail = True

    def plan(self, code: bytes, address: int) -> Plan:
        try:
            insn = next(self._cs.disasm(code, address, 1), None)
        except capstone.CsError:
            insn = None
        if insn is None:
            return UNDECODABLE
        return self._plan(insn)

    def _rule(self, insn, op, size: int, pop_adjust: int = 0) -> tuple | None:
        mem = op.mem
        disp = mem.disp
        base_off = index_off = seg_off = -1
        mask = MASK64
        if mem.base:
            name = insn.reg_name(mem.base)
            if name in ("rip", "eip"):
                disp += insn.address + insn.size
                if name == "eip":
                    mask = MASK32
            else:
                view = GPR_VIEWS.get(name)
                if view is None:
                    return None
                base_off = REG_OFFSET[view[0]]
                mask = MASK32 if view[1] == MASK32 else MASK64
                if view[0] == "rsp":
                    disp += pop_adjust
        if mem.index:
            name = insn.reg_name(mem.index)
            view = GPR_VIEWS.get(name)
            if view is None:
                return None  # a vector index: a gather/scatter
            index_off = REG_OFFSET[view[0]]
            if view[1] == MASK32:
                mask = MASK32
        if mem.segment:
            segment = insn.reg_name(mem.segment)
            seg_off = SEGMENT_BASES.get(segment, -1)
        return (base_off, index_off, mem.scale or 1, disp, seg_off, size, mask)

    def _plan(self, insn) -> Plan:
        mnemonic = base_mnemonic(insn.mnemonic)
        text = f"{insn.mnemonic} {insn.op_str}".strip()
        try:
            _, written = insn.regs_access()
        except capstone.CsError:
            written = ()
        wmask = 0
        for reg in written:
            wmask |= register_bit(insn.reg_name(reg))
        wmask |= 1 << REG_INDEX["rip"]
        if mnemonic == "syscall":
            bits = sum(1 << REG_INDEX[r] for r in ("rax", "rcx", "r11"))
            return Plan(SYSCALL, (), wmask | bits, False, insn.size, text)
        if mnemonic == "int3" or (mnemonic == "int" and insn.op_str.strip() == "3"):
            return Plan(INT3, (), wmask, False, insn.size, text)
        if mnemonic == "int" or mnemonic in COMPLEX_MNEMONICS or "scatter" in mnemonic:
            return Plan(COMPLEX, (), wmask, False, insn.size, text)
        rules = []
        operands = insn.operands
        for position, op in enumerate(operands):
            if op.type != cs_x86.X86_OP_MEM:
                continue
            writes = bool(op.access & capstone.CS_AC_WRITE) or (
                position == 0 and mnemonic not in READ_ONLY_FIRST and not mnemonic.startswith("prefetch"))
            if not writes:
                continue
            size = op.size
            if mnemonic in XSAVE_MNEMONICS:
                size = self.xsave_size
            elif mnemonic in FIXED_STORE_SIZES:
                size = FIXED_STORE_SIZES[mnemonic]
            if size <= 0:
                return Plan(COMPLEX, (), wmask, False, insn.size, text)
            rule = self._rule(insn, op, size, pop_adjust=8 if mnemonic == "pop" else 0)
            if rule is None:
                return Plan(COMPLEX, (), wmask, False, insn.size, text)
            rules.append(rule)
        implicit = IMPLICIT_STACK.get(mnemonic)
        if implicit is not None:
            offset, size = implicit
            if mnemonic == "push" and operands and operands[0].size == 2:
                offset, size = -2, 2
            rules.append((RSP, -1, 1, offset, -1, size, MASK64))
        elif mnemonic == "enter":
            level = operands[1].imm & 31 if len(operands) > 1 else 0
            size = 8 * (level + 1)
            rules.append((RSP, -1, 1, -size, -1, size, MASK64))
        elif mnemonic in IMPLICIT_DESTINATION and not any(op.type == cs_x86.X86_OP_MEM for op in operands):
            register, size = IMPLICIT_DESTINATION[mnemonic]
            rules.append((REG_OFFSET[register], -1, 1, 0, -1, size, MASK64))
        rep = bool(insn.prefix[0] in (0xF2, 0xF3)) and mnemonic.startswith(STRING_STORES)
        if rules:
            return Plan(WRITES, tuple(rules), wmask, rep, insn.size, text)
        return Plan(PLAIN, (), wmask, False, insn.size, text)


def rule_address(rule: tuple, regs: bytes) -> int:
    """The address a write rule names under the registers before the step."""
    base, index, scale, disp, seg, _size, mask = rule
    ea = disp
    if base >= 0:
        ea += int.from_bytes(regs[base:base + 8], "little")
    if index >= 0:
        ea += int.from_bytes(regs[index:index + 8], "little") * scale
    ea &= mask
    if seg >= 0:
        ea += int.from_bytes(regs[seg:seg + 8], "little")
    return ea & MASK64


# --------------------------------------------------------------------------
# Syscalls: the memory the kernel writes.
#
# Each output is (argument index of the pointer, size) where size is an int,
# "ret" (the result, for reads), ("arg", i) (another argument), or
# ("arg*", i, n). Outputs are only taken when the call succeeded.

SYSCALL_OUTPUTS: dict[str, tuple] = {
    "read": ((1, "ret"),),
    "pread64": ((1, "ret"),),
    "getrandom": ((0, "ret"),),
    "getcwd": ((0, "ret"),),
    "readlink": ((1, "ret"),),
    "readlinkat": ((2, "ret"),),
    "getdents": ((1, "ret"),),
    "getdents64": ((1, "ret"),),
    "getxattr": ((2, "ret"),),
    "lgetxattr": ((2, "ret"),),
    "fgetxattr": ((2, "ret"),),
    "listxattr": ((1, "ret"),),
    "llistxattr": ((1, "ret"),),
    "flistxattr": ((1, "ret"),),
    "stat": ((1, 144),),
    "fstat": ((1, 144),),
    "lstat": ((1, 144),),
    "newfstatat": ((2, 144),),
    "statx": ((4, 256),),
    "statfs": ((1, 120),),
    "fstatfs": ((1, 120),),
    "uname": ((0, 390),),
    "sysinfo": ((0, 112),),
    "times": ((0, 32),),
    "getrusage": ((1, 144),),
    "getrlimit": ((1, 16),),
    "prlimit64": ((3, 16),),
    "rt_sigaction": ((2, 32),),
    "rt_sigprocmask": ((2, ("arg", 3)),),
    "rt_sigpending": ((0, ("arg", 1)),),
    "sigaltstack": ((1, 24),),
    "clock_gettime": ((1, 16),),
    "clock_getres": ((1, 16),),
    "gettimeofday": ((0, 16), (1, 8)),
    "time": ((0, 8),),
    "pipe": ((0, 8),),
    "pipe2": ((0, 8),),
    "socketpair": ((3, 8),),
    "getresuid": ((0, 4), (1, 4), (2, 4)),
    "getresgid": ((0, 4), (1, 4), (2, 4)),
    "getgroups": ((1, ("ret*", 4)),),
    "capget": ((1, 24),),
    "sched_getaffinity": ((2, "ret"),),
    "sched_getparam": ((1, 4),),
    "getcpu": ((0, 4), (1, 4)),
    "wait4": ((1, 4), (3, 144)),
    "waitid": ((2, 128), (4, 144)),
    "get_robust_list": ((1, 8), (2, 8)),
    "getitimer": ((1, 32),),
    "setitimer": ((2, 32),),
    "timer_gettime": ((1, 32),),
    "timerfd_gettime": ((1, 32),),
    "timerfd_settime": ((3, 32),),
    "epoll_wait": ((1, ("ret*", 12)),),
    "epoll_pwait": ((1, ("ret*", 12)),),
    "poll": ((0, ("arg*", 1, 8)),),
    "ppoll": ((0, ("arg*", 1, 8)), (2, 16)),
    "sendfile": ((2, 8),),
    "copy_file_range": ((1, 8), (3, 8)),
    "splice": ((1, 8), (3, 8)),
    "mincore": ((2, ("pages", 1)),),
    "rseq": ((0, ("arg", 1)),),
}

SYSCALL_NO_WRITES = frozenset("""
    close write pwrite64 writev pwritev pwritev2 open openat openat2 creat access faccessat faccessat2
    lseek dup dup2 dup3 mmap mprotect munmap mremap brk msync mlock mlock2 munlock mlockall munlockall
    set_tid_address set_robust_list exit exit_group getpid gettid getppid getuid geteuid getgid getegid
    getpgrp getpgid getsid setsid setpgid setuid setgid setreuid setregid setresuid setresgid setgroups
    setfsuid setfsgid kill tkill tgkill memfd_create ftruncate truncate fchmod fchmodat chmod fchown
    fchownat chown lchown chdir fchdir mkdir mkdirat rmdir unlink unlinkat rename renameat renameat2 link
    linkat symlink symlinkat sched_yield umask fsync fdatasync fadvise64 flock sync syncfs socket connect
    bind listen shutdown sendto sendmsg eventfd eventfd2 timerfd_create epoll_create epoll_create1 epoll_ctl
    inotify_init inotify_init1 inotify_add_watch inotify_rm_watch personality alarm pause sched_setaffinity
    sched_setscheduler sched_setparam setrlimit setpriority getpriority membarrier close_range rt_sigreturn
    rt_sigqueueinfo utimensat futimesat utime utimes fallocate mknod mknodat chroot sethostname
    setdomainname ioprio_set ioprio_get mseal landlock_create_ruleset landlock_add_rule
    landlock_restrict_self pidfd_open pidfd_send_signal set_mempolicy mbind pkey_mprotect pkey_alloc
    pkey_free shmdt msgsnd execve execveat fanotify_init fchmodat2 sync_file_range
""".split())

# Requests of multiplexing syscalls: (syscall, request/option) -> outputs;
# a request not listed writes nothing if listed in *_QUIET, else is diffed.
IOCTL_OUTPUTS = {0x5401: ((2, 36),), 0x5413: ((2, 8),), 0x541B: ((2, 4),), 0x540F: ((2, 4),)}
FCNTL_OUTPUTS = {5: ((2, 32),), 36: ((2, 32),)}
FCNTL_QUIET = frozenset({0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 1024, 1025, 1026, 1030, 1031, 1033, 1034})
ARCH_PRCTL_OUTPUTS = {0x1003: ((1, 8),), 0x1004: ((1, 8),), 0x1021: ((1, 8),), 0x1022: ((1, 8),),
                      0x5005: ((1, 8),)}
PRCTL_OUTPUTS = {16: ((1, 16),), 2: ((1, 4),), 40: ((1, 8),), 37: ((1, 4),)}
PRCTL_QUIET = frozenset({1, 3, 4, 8, 15, 22, 23, 24, 36, 38, 39, 0x53564D41, 47, 45})
# What a call writes even when it fails: a ppoll cut short by a signal
# (Ctrl-C's SIGSTOP at the end of a recording too) writes the time it had
# left into its timeout.
SYSCALL_OUTPUTS_ON_FAILURE = {
    "ppoll": ((2, 16),),
}

FUTEX_WAKE_OP = 5
# Priority-inheritance futex calls write the lock word (the owner's tid,
# the waiters bit) as they take, hand over or wait for the lock; the
# requeue ones the second lock's word too.
FUTEX_PI_OPS = frozenset({6, 7, 8, 13})  # LOCK_PI, UNLOCK_PI, TRYLOCK_PI, LOCK_PI2
FUTEX_REQUEUE_PI_OPS = frozenset({11, 12})  # WAIT_REQUEUE_PI, CMP_REQUEUE_PI


def futex_lock_words(args: tuple[int, ...]) -> list[tuple[int, int]]:
    """The lock words a futex call may write: a PI call's, else none."""
    op = args[1] & 0x7F
    if op in FUTEX_PI_OPS:
        return [(args[0], 4)]
    if op in FUTEX_REQUEUE_PI_OPS:
        return [(args[0], 4), (args[4], 4)]
    return []
MADVISE_ZEROING = frozenset({4, 8, 9})  # DONTNEED, FREE, REMOVE
MAX_ERRNO = 4095


def _succeeded(result: int | None) -> bool:
    return result is not None and not (-MAX_ERRNO <= result < 0)


def _size(spec, args: tuple[int, ...], result: int) -> int:
    if isinstance(spec, int):
        return spec
    if spec == "ret":
        return result
    kind = spec[0]
    if kind == "arg":
        return args[spec[1]]
    if kind == "arg*":
        return args[spec[1]] * spec[2]
    if kind == "ret*":
        return result * spec[1]
    if kind == "pages":
        return (args[spec[1]] + 4095) // 4096
    raise ValueError(spec)


def _ranges(outputs, args, result) -> list[tuple[int, int]]:
    out = []
    for index, spec in outputs:
        pointer = args[index]
        size = _size(spec, args, result)
        if pointer and 0 < size <= 1 << 30:
            out.append((pointer, size))
    return out


def _iovec_ranges(read_memory, iov: int, count: int, total: int) -> list[tuple[int, int]]:
    out = []
    if not iov or total <= 0:
        return out
    for i in range(min(count, 1024)):
        raw = read_memory(iov + 16 * i, 16)
        if raw is None:
            break
        base = int.from_bytes(raw[:8], "little")
        length = int.from_bytes(raw[8:], "little")
        take = min(length, total)
        if take > 0:
            out.append((base, take))
        total -= take
        if total <= 0:
            break
    return out


def syscall_writes(name: str, args: tuple[int, ...], result: int | None,
                   read_memory) -> list[tuple[int, int]] | None:
    """[(address, size)] the kernel wrote for this syscall, or None when we
    do not know and all writable memory must be compared. ``read_memory``
    reads tracee memory (for iovecs)."""
    if name in SYSCALL_NO_WRITES:
        if name == "madvise" and args[2] in MADVISE_ZEROING:
            return None
        return []
    if not _succeeded(result):
        if name in SYSCALL_OUTPUTS_ON_FAILURE and result is not None:
            return _ranges(SYSCALL_OUTPUTS_ON_FAILURE[name], args, result)
        return [] if name in SYSCALL_OUTPUTS or name in ("ioctl", "fcntl", "arch_prctl", "prctl") else None
    if name in SYSCALL_OUTPUTS:
        return _ranges(SYSCALL_OUTPUTS[name], args, result)
    if name in ("readv", "preadv", "preadv2"):
        return _iovec_ranges(read_memory, args[1], args[2], result)
    if name == "ioctl":
        outputs = IOCTL_OUTPUTS.get(args[1] & MASK32)
        return None if outputs is None else _ranges(outputs, args, result)
    if name == "fcntl":
        command = args[1] & MASK32
        if command in FCNTL_OUTPUTS:
            return _ranges(FCNTL_OUTPUTS[command], args, result)
        return [] if command in FCNTL_QUIET else None
    if name == "arch_prctl":
        return _ranges(ARCH_PRCTL_OUTPUTS.get(args[0], ()), args, result)
    if name == "prctl":
        option = args[0] & MASK32
        if option in PRCTL_OUTPUTS:
            return _ranges(PRCTL_OUTPUTS[option], args, result)
        return [] if option in PRCTL_QUIET else None
    if name == "futex":
        return None if args[1] & 0x7F == FUTEX_WAKE_OP else futex_lock_words(args)
    if name == "madvise":
        return None if args[2] in MADVISE_ZEROING else []
    return None
