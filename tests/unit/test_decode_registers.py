"""Registers and siginfo: the state decoded at every stop."""

import struct

import pytest

from loaderdbg.arch import X86_64, get_arch
from loaderdbg.decode.errors import DecodeError
from loaderdbg.decode.registers import (
    Registers,
    changed_registers,
    decode_registers,
    encode_registers,
    format_flags,
)
from loaderdbg.decode.siginfo import SigInfo, decode_siginfo, describe_siginfo, signal_name

# The registers at the exec stop of /bin/true with ASLR off (PTRACE_NOTES §1, §6).
EXEC_STOP = {
    "r15": 0, "r14": 0, "r13": 0, "r12": 0, "rbp": 0, "rbx": 0, "r11": 0, "r10": 0,
    "r9": 0, "r8": 0, "rax": 0, "rcx": 0, "rdx": 0, "rsi": 0, "rdi": 0,
    "orig_rax": 59, "rip": 0x7FFFF7FE4B70, "cs": 0x33, "eflags": 0x200,
    "rsp": 0x7FFFFFFFE5A0, "ss": 0x2B, "fs_base": 0, "gs_base": 0,
    "ds": 0, "es": 0, "fs": 0, "gs": 0,
}


def exec_stop_bytes() -> bytes:
    return struct.pack("<27Q", *(EXEC_STOP[name] for name in X86_64.user_regs_fields))


def test_decode_golden_bytes():
    regs = decode_registers(exec_stop_bytes(), X86_64)
    assert regs.pc == 0x7FFFF7FE4B70
    assert regs.sp == 0x7FFFFFFFE5A0
    assert regs["orig_rax"] == 59 and regs["cs"] == 0x33
    assert regs.names() == X86_64.user_regs_fields
    assert regs.flags == ("IF",)
    assert regs.get("nope") is None and "rip" in regs


def test_round_trip():
    raw = bytes(range(216))
    assert encode_registers(decode_registers(raw, X86_64), X86_64) == raw
    regs = decode_registers(exec_stop_bytes(), X86_64)
    assert decode_registers(encode_registers(regs, X86_64), X86_64) == regs


def test_rax_is_at_offset_80():
    raw = bytearray(216)
    raw[80:88] = (0xFFFFFFFFFFFFFFDA).to_bytes(8, "little")  # -ENOSYS at syscall entry
    assert decode_registers(bytes(raw), X86_64)["rax"] == 0xFFFFFFFFFFFFFFDA


@pytest.mark.parametrize("size", [0, 8, 215, 217, 272])
def test_wrong_size_is_a_decode_error(size):
    with pytest.raises(DecodeError, match="216"):
        decode_registers(bytes(size), X86_64)


def test_encode_rejects_missing_or_oversized():
    regs = decode_registers(exec_stop_bytes(), X86_64)
    with pytest.raises(ValueError, match="does not fit"):
        encode_registers(regs.replace(rax=1 << 64), X86_64)
    with pytest.raises(ValueError, match="missing"):
        encode_registers(Registers({"rax": 1}), X86_64)


def test_registers_are_frozen_and_hashable():
    a = decode_registers(exec_stop_bytes(), X86_64)
    b = decode_registers(exec_stop_bytes(), X86_64)
    assert a == b and hash(a) == hash(b)
    with pytest.raises(TypeError):
        a.values["rax"] = 1  # type: ignore[index]
    c = a.replace(rax=5)
    assert c["rax"] == 5 and a["rax"] == 0
    with pytest.raises(KeyError):
        a.replace(xmm0=1)


def test_changed_registers_in_struct_order():
    before = decode_registers(exec_stop_bytes(), X86_64)
    after = before.replace(rip=before.pc + 2, rdx=0, rax=7, eflags=0x246)
    assert changed_registers(before, after) == ("rax", "rip", "eflags")
    assert changed_registers(before, before) == ()


@pytest.mark.parametrize("value,text", [
    (0x246, "[ PF ZF IF ]"),
    (0x202, "[ IF ]"),
    (0x2, "[ ]"),
    (0x10346, "[ PF ZF TF IF RF ]"),
    (0x3202, "[ IF IOPL=3 ]"),
    (0x200ED5, "[ CF PF AF ZF SF IF DF OF ID ]"),
])
def test_format_flags_like_gdb(value, text):
    assert format_flags(value, X86_64) == text


def test_aarch64_registers():
    arch = get_arch("aarch64")
    raw = struct.pack("<34Q", *range(34))
    regs = decode_registers(raw, arch)
    assert regs["x0"] == 0 and regs["x30"] == 30
    assert regs.sp == 31 and regs.pc == 32 and regs["pstate"] == 33
    assert format_flags(0x6000_0000, arch) == "[ C Z ]"
    assert encode_registers(regs, arch) == raw


# --------------------------------------------------------------------- siginfo

def siginfo(signo: int, code: int, errno: int = 0, union: bytes = b"") -> bytes:
    head = struct.pack("<iiii", signo, errno, code, 0)
    return (head + union).ljust(128, b"\0")


def test_segv_maperr_at_zero():
    si = decode_siginfo(siginfo(11, 1, union=struct.pack("<Q", 0)), X86_64)
    assert (si.signame, si.codename, si.addr, si.pid, si.layout) == ("SIGSEGV", "SEGV_MAPERR", 0, None, "fault")
    assert describe_siginfo(si) == "SIGSEGV {si_code=SEGV_MAPERR, si_addr=0}"


def test_segv_accerr_address():
    si = decode_siginfo(siginfo(11, 2, union=struct.pack("<Q", 0x7FFFF7FC1000)), X86_64)
    assert describe_siginfo(si) == "SIGSEGV {si_code=SEGV_ACCERR, si_addr=0x7ffff7fc1000}"


@pytest.mark.parametrize("code,name", [
    (1, "TRAP_BRKPT"), (2, "TRAP_TRACE"), (4, "TRAP_HWBKPT"), (0x80, "SI_KERNEL"),
    (0, "SI_USER"), (0x405, "PTRACE_EVENT_EXEC"), (0x105, "PTRACE_EVENT_FORK"),
    (0x8005, "PTRACE_EVENT_STOP"), (0x85, "SIGTRAP|0x80"), (-6, "SI_TKILL"),
])
def test_sigtrap_codes(code, name):
    assert decode_siginfo(siginfo(5, code, union=struct.pack("<iI", 1234, 1000)), X86_64).codename == name


def test_ptrace_exec_event_has_pid():
    si = decode_siginfo(siginfo(5, 0x405, union=struct.pack("<iI", 4242, 0)), X86_64)
    assert si.is_ptrace_event and si.pid == 4242 and si.addr is None
    assert describe_siginfo(si) == "SIGTRAP {si_code=PTRACE_EVENT_EXEC, si_pid=4242, si_uid=0}"


def test_single_step_trap_has_address():
    si = decode_siginfo(siginfo(5, 2, union=struct.pack("<Q", 0x401000)), X86_64)
    assert si.layout == "fault" and si.addr == 0x401000 and si.pid is None


def test_sigchld():
    si = decode_siginfo(siginfo(17, 2, union=struct.pack("<iIi", 77, 1000, 9)), X86_64)
    assert (si.codename, si.pid, si.uid, si.status) == ("CLD_KILLED", 77, 1000, 9)
    assert describe_siginfo(si) == "SIGCHLD {si_code=CLD_KILLED, si_pid=77, si_uid=1000, si_status=SIGKILL}"


def test_kill_from_user():
    si = decode_siginfo(siginfo(10, 0, union=struct.pack("<iI", 99, 1000)), X86_64)
    assert describe_siginfo(si) == "SIGUSR1 {si_code=SI_USER, si_pid=99, si_uid=1000}"


@pytest.mark.parametrize("signo,code,name", [
    (7, 2, "BUS_ADRERR"), (4, 2, "ILL_ILLOPN"), (8, 1, "FPE_INTDIV"), (8, 9, "9"),
    (31, 1, "SYS_SECCOMP"), (29, 1, "POLL_IN"),
])
def test_other_codes(signo, code, name):
    assert decode_siginfo(siginfo(signo, code), X86_64).codename == name


def test_signal_names():
    assert signal_name(9) == "SIGKILL"
    assert signal_name(32) == "SIGRTMIN" and signal_name(35) == "SIGRT_3" and signal_name(64) == "SIGRTMAX"


@pytest.mark.parametrize("size", [0, 12, 127, 129])
def test_siginfo_wrong_size(size):
    with pytest.raises(DecodeError):
        decode_siginfo(bytes(size), X86_64)


def test_siginfo_is_frozen():
    si = decode_siginfo(siginfo(11, 1), X86_64)
    assert isinstance(si, SigInfo) and hash(si) == hash(decode_siginfo(siginfo(11, 1), X86_64))
