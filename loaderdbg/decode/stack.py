"""The initial process stack as exec leaves it (System V psABI, fig. 3.9):

    sp -> argc
          argv[0] .. argv[argc-1], NULL
          envp[0] .. NULL
          auxv (type, value) pairs .. AT_NULL
          (padding, AT_RANDOM bytes, AT_PLATFORM, then the strings)

decode_initial_stack walks it through a MemoryReader; looks_like_initial_stack
is the cheap test of whether a stop's sp points at such a block at all.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Iterator

from loaderdbg.arch import ArchTables
from loaderdbg.decode.auxv import AT_NULL, MAX_AUXV_PAIRS, AuxvEntry, parse_auxv
from loaderdbg.decode.errors import DecodeError
from loaderdbg.decode.memory import MemoryReader, read_cstring

MAX_ARGC = 1 << 20
MAX_ENVC = 1 << 20
# MAX_ARG_STRLEN: the kernel refuses longer argv/envp strings.
MAX_ARG_STRLEN = 32 * 4096
# Total argv + envp string bytes worth reading: exec allows at most a quarter
# of the stack rlimit (2 MiB with the usual 8 MiB), so this is generous.
MAX_STRINGS_TOTAL = 16 << 20
# Words fetched per read while scanning for a NULL; a failed chunk falls back
# to single words so a vector ending near the top of the stack still reads.
_CHUNK_WORDS = 64


@dataclass(frozen=True)
class StackString:
    """One argv/envp slot: where the pointer is, its value, and the string.

    text is decoded as UTF-8 with errors="backslashreplace", so it always
    encodes (no surrogates to trip JSON or the terminal); raw keeps the exact
    bytes. Both are None when the pointer
    is NULL or the string unreadable/unterminated.
    """

    pointer_address: int
    pointer: int
    text: str | None
    raw: bytes | None = None


@dataclass(frozen=True)
class InitialStack:
    """The stack the kernel built at execve: argc, argv, envp, auxv and where each lies."""

    sp: int
    argc: int
    argv: tuple[StackString, ...]
    envp: tuple[StackString, ...]
    auxv: tuple[AuxvEntry, ...]
    auxv_address: int
    argv_address: int
    envp_address: int
    # First byte after the AT_NULL pair: the end of the pointer block (the
    # strings and AT_RANDOM bytes lie above it, up to the stack top).
    end: int


def _words(memory: MemoryReader, addr: int, arch: ArchTables, limit: int) -> Iterator[int]:
    """Consecutive words from addr, at most limit of them; stops silently at
    the first unreadable one."""
    size = arch.word_size
    fmt = arch.word_format
    produced = 0
    while produced < limit:
        count = min(_CHUNK_WORDS, limit - produced)
        chunk = memory.read(addr, count * size)
        if chunk is None or len(chunk) != count * size:
            chunk = memory.read(addr, size)
            if chunk is None or len(chunk) != size:
                return
            count = 1
        yield from (word for (word,) in struct.iter_unpack(fmt, chunk))
        produced += count
        addr += count * size


def _read_word(memory: MemoryReader, addr: int, arch: ArchTables) -> int | None:
    raw = memory.read(addr, arch.word_size)
    return None if raw is None or len(raw) != arch.word_size else struct.unpack(arch.word_format, raw)[0]


def _pointer_vector(memory: MemoryReader, addr: int, arch: ArchTables, limit: int,
                    what: str) -> tuple[int, ...]:
    """Pointers from addr up to (not including) the NULL terminator."""
    pointers = []
    for word in _words(memory, addr, arch, limit + 1):
        if word == 0:
            return tuple(pointers)
        pointers.append(word)
    if len(pointers) > limit:
        raise DecodeError(f"{what} at {addr:#x} has more than {limit} entries")
    raise DecodeError(f"{what} at {addr:#x} runs into unreadable memory before its NULL")


class _StringBudget:
    """Reads argv/envp strings until MAX_STRINGS_TOTAL bytes have been read,
    so a garbage vector of a million pointers into big non-NUL memory cannot
    stall a stop; strings past the budget come back with text None."""

    def __init__(self, memory: MemoryReader) -> None:
        self.memory = memory
        self.left = MAX_STRINGS_TOTAL

    def string(self, pointer_address: int, pointer: int) -> StackString:
        limit = min(MAX_ARG_STRLEN, self.left)
        raw = read_cstring(self.memory, pointer, limit) if pointer and limit > 0 else None
        self.left -= limit if raw is None else len(raw) + 1
        text = None if raw is None else raw.decode("utf-8", "backslashreplace")
        return StackString(pointer_address, pointer, text, raw)


def _auxv_words(memory: MemoryReader, addr: int, arch: ArchTables) -> tuple[int, ...]:
    """Words of the auxv pairs from addr through the AT_NULL pair (or as far
    as memory and MAX_AUXV_PAIRS allow), always a whole number of pairs."""
    words: list[int] = []
    for word in _words(memory, addr, arch, 2 * MAX_AUXV_PAIRS):
        words.append(word)
        if len(words) % 2 == 0 and words[-2] == AT_NULL:
            break
    return tuple(words[:len(words) - len(words) % 2])


def decode_initial_stack(memory: MemoryReader, sp: int, arch: ArchTables) -> InitialStack:
    """Read argc, argv, envp and auxv starting at sp. Strings are read too
    (text None when unreadable). DecodeError when the layout does not hold:
    unreadable argc, argc/envc beyond the sanity limits, a missing NULL, or
    an auxv without AT_NULL within MAX_AUXV_PAIRS."""
    word = arch.word_size
    argc = _read_word(memory, sp, arch)
    if argc is None:
        raise DecodeError(f"argc at {sp:#x} is unreadable")
    if argc > MAX_ARGC:
        raise DecodeError(f"argc {argc} at {sp:#x} is implausible")

    argv_address = sp + word
    argv_words = tuple(_words(memory, argv_address, arch, argc + 1))
    if len(argv_words) != argc + 1:
        raise DecodeError(f"argv at {argv_address:#x} ({argc} entries) is not fully readable")
    if argv_words[argc] != 0:
        raise DecodeError(f"argv[argc] at {argv_address + argc * word:#x} is not NULL")
    strings = _StringBudget(memory)
    argv = tuple(strings.string(argv_address + i * word, pointer)
                 for i, pointer in enumerate(argv_words[:argc]))

    envp_address = argv_address + (argc + 1) * word
    env_pointers = _pointer_vector(memory, envp_address, arch, MAX_ENVC, "envp")
    envp = tuple(strings.string(envp_address + i * word, pointer)
                 for i, pointer in enumerate(env_pointers))

    auxv_address = envp_address + (len(env_pointers) + 1) * word
    auxv_words = _auxv_words(memory, auxv_address, arch)
    auxv_raw = struct.pack(arch.word_format[0] + arch.word_format[1] * len(auxv_words), *auxv_words)
    auxv = parse_auxv(auxv_raw, arch, memory, auxv_address)
    end = auxv_address + len(auxv) * 2 * word
    return InitialStack(sp=sp, argc=argc, argv=argv, envp=envp, auxv=auxv, auxv_address=auxv_address,
                        argv_address=argv_address, envp_address=envp_address, end=end)


# Plausibility limits for looks_like_initial_stack: far above anything exec
# builds in practice, low enough that the scan stays cheap.
_PLAUSIBLE_ARGC = 1 << 16
_PLAUSIBLE_ENVC = 1 << 16
# Every exec'd image gets AT_PAGESZ (fs/binfmt_elf.c create_elf_tables).
_AT_PAGESZ = 6


def looks_like_initial_stack(memory: MemoryReader, sp: int, arch: ArchTables) -> bool:
    """Cheap test, no strings read: word-aligned sp, small argc,
    argv[argc] == NULL, argv pointers above sp, envp NULL-terminated, and an
    auxv of known AT_* types ending in AT_NULL that includes AT_PAGESZ."""
    word = arch.word_size
    if sp % word:
        return False
    argc = _read_word(memory, sp, arch)
    if argc is None or argc > _PLAUSIBLE_ARGC:
        return False
    argv = tuple(_words(memory, sp + word, arch, argc + 1))
    if len(argv) != argc + 1 or argv[argc] != 0:
        return False
    if any(pointer <= sp for pointer in argv[:argc]):
        return False
    envp_address = sp + (argc + 2) * word
    envc = 0
    for pointer in _words(memory, envp_address, arch, _PLAUSIBLE_ENVC + 1):
        if pointer == 0:
            break
        if pointer <= sp:
            return False
        envc += 1
    else:
        return False
    auxv_address = envp_address + (envc + 1) * word
    types = _auxv_words(memory, auxv_address, arch)[0::2]
    if AT_NULL not in types:
        return False
    types = types[:types.index(AT_NULL)]
    return _AT_PAGESZ in types and all(t in arch.auxv_types for t in types)
