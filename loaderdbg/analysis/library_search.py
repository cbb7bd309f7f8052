"""Which objects a program's startup will load, found on disk before it
runs, as its ld.so finds them (glibc's elf/dl-load.c _dl_map_object; musl's
ldso/dynlink.c load_library):

- a DT_NEEDED name with a slash is taken as it is;
- else DT_RPATH (of the needing object, then of the program, when the
  needing object has no DT_RUNPATH), LD_LIBRARY_PATH, DT_RUNPATH, the
  ld.so.cache (``ldconfig -p``), then the system directories; musl reads its
  ``/etc/ld-musl-ARCH.path`` instead of a cache;
- $ORIGIN, $LIB and $PLATFORM are expanded; a file of another machine or
  class is passed over, as ld.so does.

Used to tell, before launching, that no object defines a name a user wants
to stop at (``sym:NAME``). Where the answer cannot be known before running
(a script, a program without an interpreter that maps objects itself, a
DT_NEEDED that is not found), the search says so instead of guessing.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import stat
import subprocess
import threading
from dataclasses import dataclass, field
from typing import Iterator, Mapping

from elftools.common.exceptions import ELFError
from elftools.construct import ConstructError
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import NoteSection, SymbolTableSection

from loaderdbg.debug_files import DEBUG_DIRECTORIES, build_id_path, debuglink_paths, find_debug_file
from loaderdbg.decode.elf import ElfInfo, parse_elf
from loaderdbg.decode.elf_structs import SharedELFFile
from loaderdbg.decode.errors import DecodeError

# Debian's multiarch directory and $LIB, per machine.
_MULTIARCH = {"EM_X86_64": "x86_64-linux-gnu", "EM_AARCH64": "aarch64-linux-gnu", "EM_386": "i386-linux-gnu"}
_PLATFORM = {"EM_X86_64": "x86_64", "EM_AARCH64": "aarch64", "EM_386": "i686"}
_MUSL_ARCH = {"EM_X86_64": "x86_64", "EM_AARCH64": "aarch64", "EM_386": "i386"}
_CACHE_LINE = re.compile(r"^\s*(\S+) \(([^)]*)\) => (/\S+)$")
# Objects bigger than this are not read for names before a run.
_MAX_OBJECT_BYTES = 1 << 30
_ELF_ERRORS = (ELFError, ConstructError, ValueError, TypeError, KeyError, IndexError, AssertionError,
               StopIteration, UnicodeDecodeError, OverflowError, AttributeError, RecursionError)


@dataclass(frozen=True)
class SymbolSearch:
    """Where NAME was looked for (paths, in load order) and the first
    object found to define it (None: none does). ``static_definitions``:
    (path, bind) of each object that defines NAME only in a symbol table
    ld.so does not search (.symtab, a debug file's), when no object
    exports it; searched to the end only while every one is LOCAL."""

    defined_in: str | None
    searched: tuple[str, ...]
    static_definitions: tuple[tuple[str, str], ...] = ()


def search_definition(program: str, name: str, env: Mapping[str, str]) -> SymbolSearch | None:
    """Look for a definition of ``name`` (.dynsym, .symtab, the separate
    debug file's .symtab, the vDSO) in the objects the program's startup
    loads: LD_PRELOAD, the program, its ld.so, its DT_NEEDED closure. None
    when that set cannot be known before running."""
    files = _Files()
    first = files.object_at(program)
    if first is None:
        return None
    searched: list[str] = []
    statics: list[tuple[str, str]] = []

    def answer() -> SymbolSearch:
        # sym:'s order (SymbolTable.static_definitions): a GLOBAL/WEAK
        # definition, then ld.so's, then the rest.
        ordered = sorted(statics, key=lambda d: (d[1] == "LOCAL", d[0] != first.interp))
        return SymbolSearch(ordered[0][0] if ordered else None, tuple(searched), tuple(ordered))

    for obj in _startup_objects(first, env, files):
        if obj is None:
            return None
        searched.append(obj.path)
        how = obj.definition(name)
        if how == "dynamic":
            return SymbolSearch(obj.path, tuple(searched))
        if how is not None:
            statics.append((obj.path, how))
            if how != "LOCAL":
                return answer()
    vdso = _vdso_info()
    if vdso is not None:
        searched.append("[vdso]")
        if vdso.definitions(name):
            return SymbolSearch("[vdso]", tuple(searched))
    return answer()


@dataclass
class _Object:
    """What the search needs of an ELF file, read with pyelftools without
    decoding its relocations and symbol tables (gdb loads 60 objects)."""

    path: str
    machine: str
    elf_class: int
    interp: str | None
    has_dynamic: bool
    needed: tuple[str, ...]
    soname: str | None
    rpath: str | None
    runpath: str | None
    build_id: str | None
    debuglink: str | None
    elffile: ELFFile = field(repr=False)
    data: bytes = field(repr=False)

    def definition(self, name: str) -> str | None:
        """How this object defines name: "dynamic" (.dynsym, through its
        hash table), else the bind of its .symtab's or its separate debug
        file's definition; None when it does not. ``puts@plt``: "dynamic"
        when a PLT entry is named so (ElfInfo.plt_entry_named)."""
        if name.endswith("@plt"):
            try:
                return "dynamic" if parse_elf(self.data, self.path).plt_entry_named(name) is not None else None
            except DecodeError:
                return None
        if self._dynamic_defines(name):
            return "dynamic"
        bind = _symtab_bind(self.elffile, name)
        if bind is not None or not self._may_have_debug_file():
            return bind
        try:
            info = parse_elf(self.data, self.path)
        except DecodeError:
            return None
        debug_file = find_debug_file(self.path, info)
        symbol = None if debug_file is None else info.with_debug_file(debug_file).symbol_named(name)
        return symbol.bind if symbol is not None and symbol.value else None

    def _dynamic_defines(self, name: str) -> bool:
        for section_name in (".gnu.hash", ".hash"):
            table = self.elffile.get_section_by_name(section_name)
            if table is not None and hasattr(table, "get_symbol"):
                return _is_definition(table.get_symbol(name))
        dynsym = self.elffile.get_section_by_name(".dynsym")
        found = dynsym.get_symbol_by_name(name) if isinstance(dynsym, SymbolTableSection) else None
        return any(_is_definition(symbol) for symbol in found or ())

    def _may_have_debug_file(self) -> bool:
        for directory in DEBUG_DIRECTORIES:
            if self.build_id and os.path.isfile(build_id_path(self.build_id, directory)):
                return True
        return bool(self.debuglink) and any(
            os.path.isfile(p) for p in debuglink_paths(self.path, self.debuglink, DEBUG_DIRECTORIES))


def _is_definition(symbol) -> bool:
    if symbol is None or symbol["st_shndx"] == "SHN_UNDEF":
        return False
    return bool(symbol["st_value"]) or symbol["st_info"]["type"] == "STT_TLS"


def _symtab_bind(elffile: ELFFile, name: str) -> str | None:
    symtab = elffile.get_section_by_name(".symtab")
    if not isinstance(symtab, SymbolTableSection):
        return None
    found = [symbol for symbol in symtab.get_symbol_by_name(name) or () if _is_definition(symbol)]
    if not found:
        return None
    binds = [str(symbol["st_info"]["bind"]).removeprefix("STB_") for symbol in found]
    return next((bind for bind in binds if bind != "LOCAL"), binds[0])


def _startup_objects(first: "_Object", env: Mapping[str, str], files: _Files) -> Iterator["_Object | None"]:
    """The program, LD_PRELOAD, the interpreter, then the DT_NEEDED closure
    breadth-first, each once; None where the rest cannot be known."""
    if first.interp is None:
        # Static (or static-pie): nothing else is loaded at startup. A
        # dynamic object run without an interpreter (ld.so itself, a
        # program that maps objects by hand) may load anything.
        if not first.has_dynamic or (not first.needed and first.soname is None):
            yield first
            return
        yield None
        return
    search = _Search(first, env, files)
    seen: set[str] = set()
    queue: list[_Object] = []

    def fresh(obj: _Object) -> bool:
        real = os.path.realpath(obj.path)
        if real in seen:
            return False
        seen.add(real)
        return True

    for preload in re.split(r"[ :]", env.get("LD_PRELOAD", "")):
        hit = search.find(preload, first) if preload else None
        if hit is not None and fresh(hit):
            queue.append(hit)
            yield hit
    if fresh(first):
        queue.append(first)
        yield first
    interp = files.object_at(first.interp)
    if interp is not None and search.fits(interp) and fresh(interp):
        yield interp  # ld.so's own DT_NEEDED are none
    index = 0
    while index < len(queue):
        obj = queue[index]
        for needed in obj.needed:
            hit = search.find(needed, obj)
            if hit is None:
                if search.musl and needed.startswith("libc.so"):
                    continue  # musl's ld.so is its libc: it answers to that name itself
                yield None  # ld.so would refuse to start the program
                return
            if fresh(hit):
                queue.append(hit)
                yield hit
        index += 1


class _Search:
    def __init__(self, program: "_Object", env: Mapping[str, str], files: _Files) -> None:
        self.files = files
        self.program = program
        self.machine = program.machine
        self.elf_class = program.elf_class
        self.musl = "ld-musl" in (program.interp or "")
        self.library_path = [d for d in env.get("LD_LIBRARY_PATH", "").replace(";", ":").split(":") if d]
        multiarch = _MULTIARCH.get(self.machine)
        self.lib = f"lib/{multiarch}" if multiarch else "lib"
        self.platform = _PLATFORM.get(self.machine, "")
        if self.musl:
            self.cache: dict[str, list[str]] = {}
            self.system = _musl_path(_MUSL_ARCH.get(self.machine, ""))
        else:
            self.cache = _ld_so_cache()
            system = [f"/{self.lib}", f"/usr/{self.lib}"] if multiarch else []
            bits = "64" if self.elf_class == 64 else ""
            self.system = system + [f"/lib{bits}", f"/usr/lib{bits}", "/lib", "/usr/lib"]

    def fits(self, obj: "_Object") -> bool:
        return obj.machine == self.machine and obj.elf_class == self.elf_class

    def find(self, needed: str, requester: "_Object") -> "_Object | None":
        for candidate in self._candidates(needed, requester, requester.path):
            obj = self.files.object_at(candidate)
            if obj is not None and self.fits(obj):
                return obj
        return None

    def _candidates(self, needed: str, requester: "_Object", requester_path: str) -> Iterator[str]:
        if "/" in needed:
            yield self._expand(needed, requester_path)
            return
        origin = os.path.dirname(os.path.realpath(requester_path))
        if requester.runpath is None:
            for directory in self._path_list(requester.rpath, origin):
                yield os.path.join(directory, needed)
            if requester is not self.program and self.program.runpath is None:
                program_origin = os.path.dirname(os.path.realpath(self.program.path or requester_path))
                for directory in self._path_list(self.program.rpath, program_origin):
                    yield os.path.join(directory, needed)
        for directory in self.library_path:
            yield os.path.join(directory, needed)
        for directory in self._path_list(requester.runpath, origin):
            yield os.path.join(directory, needed)
        yield from self.cache.get(needed, ())
        for directory in self.system:
            yield os.path.join(directory, needed)

    def _path_list(self, spelled: str | None, origin: str) -> list[str]:
        if not spelled:
            return []
        return [self._expand(d, None, origin) for d in spelled.split(":") if d]

    def _expand(self, text: str, requester_path: str | None, origin: str | None = None) -> str:
        if origin is None:
            origin = os.path.dirname(os.path.realpath(requester_path)) if requester_path else ""
        for token, value in (("ORIGIN", origin), ("LIB", self.lib), ("PLATFORM", self.platform)):
            text = text.replace("${" + token + "}", value).replace("$" + token, value)
        return text


_cache_lock = threading.Lock()
_cache: list[dict[str, list[str]]] = []


def _ld_so_cache() -> dict[str, list[str]]:
    """glibc's ld.so.cache as ``ldconfig -p`` prints it: name -> paths,
    read once per process ({} when ldconfig is not there)."""
    with _cache_lock:
        if _cache:
            return _cache[0]
    found: dict[str, list[str]] = {}
    ldconfig = shutil.which("ldconfig") or next(
        (p for p in ("/sbin/ldconfig", "/usr/sbin/ldconfig") if os.path.isfile(p)), None)
    if ldconfig is not None:
        try:
            listing = subprocess.run([ldconfig, "-p"], capture_output=True, text=True, timeout=10,
                                     stdin=subprocess.DEVNULL).stdout
        except (OSError, subprocess.SubprocessError):
            listing = ""
        for line in listing.splitlines():
            match = _CACHE_LINE.match(line)
            if match:
                found.setdefault(match.group(1), []).append(match.group(3))
    with _cache_lock:
        if not _cache:
            _cache.append(found)
        return _cache[0]


def _musl_path(arch: str) -> list[str]:
    """musl's search path: /etc/ld-musl-ARCH.path (colon- or
    newline-separated), else its built-in /lib:/usr/local/lib:/usr/lib."""
    try:
        with open(f"/etc/ld-musl-{arch}.path", encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return ["/lib", "/usr/local/lib", "/usr/lib"]
    return [d for d in re.split(r"[:\n]", text) if d.strip()]


class _Files:
    """The files one search has read, by (path, inode, mtime): the same
    library is needed by many objects. Kept for that search only (their
    bytes are not held after it)."""

    def __init__(self) -> None:
        self._read: dict[tuple, "_Object | None"] = {}

    def object_at(self, path: str) -> "_Object | None":
        try:
            status = os.stat(path)
        except OSError:
            return None
        if not stat.S_ISREG(status.st_mode) or status.st_size > _MAX_OBJECT_BYTES:
            return None
        key = (path, status.st_dev, status.st_ino, status.st_mtime_ns, status.st_size)
        if key not in self._read:
            self._read[key] = _load_object(path)
        return self._read[key]


def _load_object(path: str) -> "_Object | None":
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    if not data.startswith(b"\x7fELF"):
        return None
    try:
        elffile = SharedELFFile(io.BytesIO(data))
        interp = None
        has_dynamic = False
        tags: dict[str, list[str]] = {}
        for segment in elffile.iter_segments():
            if segment["p_type"] == "PT_INTERP":
                interp = segment.get_interp_name()
            elif segment["p_type"] == "PT_DYNAMIC":
                has_dynamic = True
                for tag in segment.iter_tags():
                    for kind in ("needed", "soname", "rpath", "runpath"):
                        if tag.entry.d_tag == "DT_" + kind.upper():
                            tags.setdefault(kind, []).append(getattr(tag, kind))
        build_id = None
        debuglink = None
        for section in elffile.iter_sections():
            if isinstance(section, NoteSection):
                for note in section.iter_notes():
                    if note["n_type"] == "NT_GNU_BUILD_ID":
                        desc = note["n_desc"]
                        build_id = desc.hex() if isinstance(desc, bytes) else str(desc)
            elif section.name == ".gnu_debuglink":
                debuglink = section.data().split(b"\0", 1)[0].decode("utf-8", "replace")
        return _Object(path, elffile["e_machine"], elffile.elfclass, interp, has_dynamic,
                       tuple(tags.get("needed", ())), next(iter(tags.get("soname", ())), None),
                       next(iter(tags.get("rpath", ())), None), next(iter(tags.get("runpath", ())), None),
                       build_id, debuglink, elffile, data)
    except _ELF_ERRORS:
        return None


_vdso_lock = threading.Lock()
_vdso: list[ElfInfo | None] = []


def _vdso_info() -> ElfInfo | None:
    """This kernel's vDSO, read from our own process: every process here
    gets the same image."""
    with _vdso_lock:
        if _vdso:
            return _vdso[0]
    info = None
    try:
        with open("/proc/self/maps", encoding="ascii", errors="replace") as maps:
            span = next((line.split()[0] for line in maps if line.rstrip().endswith("[vdso]")), None)
        if span is not None:
            start, end = (int(x, 16) for x in span.split("-"))
            with open("/proc/self/mem", "rb", buffering=0) as memory:
                memory.seek(start)
                info = parse_elf(memory.read(end - start), "[vdso]")
    except (OSError, ValueError, DecodeError):
        info = None
    with _vdso_lock:
        if not _vdso:
            _vdso.append(info)
        return _vdso[0]
