"""The SFrame header (the contents of PT_GNU_SFRAME / .sframe).

pyelftools does not know SFrame, so this one structure is decoded with
``struct``. Layout from binutils include/sframe.h; versions 1 (binutils 2.40)
and 2 (2.41+) share the 28-byte header:

    u16 magic (0xdee2, in the object's byte order)   u8 version   u8 flags
    u8 abi_arch   i8 cfa_fixed_fp_offset   i8 cfa_fixed_ra_offset
    u8 auxhdr_len   u32 num_fdes   u32 num_fres   u32 fre_len
    u32 fdeoff   u32 freoff
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from loaderdbg.decode.errors import DecodeError

SFRAME_MAGIC = 0xDEE2
SFRAME_VERSIONS = {1: "SFRAME_VERSION_1", 2: "SFRAME_VERSION_2"}

SFRAME_FLAGS = {
    0x1: "SFRAME_F_FDE_SORTED",
    0x2: "SFRAME_F_FRAME_POINTER",
    0x4: "SFRAME_F_FDE_FUNC_START_PCREL",  # binutils 2.45, version 2
}

SFRAME_ABI_ARCH = {
    1: "AARCH64_ENDIAN_BIG",
    2: "AARCH64_ENDIAN_LITTLE",
    3: "AMD64_ENDIAN_LITTLE",
    4: "S390X_ENDIAN_BIG",
}

_BODY = "BbbBIIIII"
HEADER_SIZE = struct.calcsize("<H" + "BB" + _BODY)  # 28


@dataclass(frozen=True)
class SFrameHeader:
    """The header of an .sframe section (SFrame format v1/v2)."""

    magic: int
    version: int
    flags: tuple[str, ...]
    abi_arch: str
    cfa_fixed_fp_offset: int
    cfa_fixed_ra_offset: int
    auxhdr_len: int
    num_fdes: int
    num_fres: int
    fre_len: int
    fdeoff: int
    freoff: int
    little_endian: bool = True

    @property
    def header_size(self) -> int:
        """Where the FDE and FRE sub-sections are counted from."""
        return HEADER_SIZE + self.auxhdr_len


def parse_sframe_header(data: bytes) -> SFrameHeader:
    if len(data) < HEADER_SIZE:
        raise DecodeError(f"SFrame: {len(data)} bytes, header needs {HEADER_SIZE}")
    # The magic is written in the object's byte order; it tells us which.
    if struct.unpack_from("<H", data)[0] == SFRAME_MAGIC:
        order = "<"
    elif struct.unpack_from(">H", data)[0] == SFRAME_MAGIC:
        order = ">"
    else:
        raise DecodeError(f"SFrame: bad magic {data[:2].hex()} (want 0xdee2)")
    (magic, version, flags, abi, fp_off, ra_off, auxhdr_len,
     num_fdes, num_fres, fre_len, fdeoff, freoff) = struct.unpack_from(order + "HBB" + _BODY, data)
    if version not in SFRAME_VERSIONS:
        raise DecodeError(f"SFrame: unsupported version {version}")
    names = tuple(name for bit, name in sorted(SFRAME_FLAGS.items()) if flags & bit)
    unknown = flags & ~sum(SFRAME_FLAGS)
    if unknown:
        names += (f"{unknown:#x}",)
    end = HEADER_SIZE + auxhdr_len
    # Offsets count from the end of the header; they must stay inside the data
    # we were given (fre_len bytes of FREs start at freoff).
    if end + fdeoff > len(data) or end + freoff + fre_len > len(data):
        raise DecodeError(
            f"SFrame: sub-sections (fdeoff {fdeoff:#x}, freoff {freoff:#x}+{fre_len:#x}) "
            f"run past {len(data):#x} bytes")
    return SFrameHeader(
        magic=magic,
        version=version,
        flags=names,
        abi_arch=SFRAME_ABI_ARCH.get(abi, f"{abi:#x}"),
        cfa_fixed_fp_offset=fp_off,
        cfa_fixed_ra_offset=ra_off,
        auxhdr_len=auxhdr_len,
        num_fdes=num_fdes,
        num_fres=num_fres,
        fre_len=fre_len,
        fdeoff=fdeoff,
        freoff=freoff,
        little_endian=order == "<",
    )
