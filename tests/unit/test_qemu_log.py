"""qemu_log.py: qemu-user's page tables and strace lines -> the guest's
pages, and the guest's maps cut out of qemu's own. The log text is in the
shape qemu 7.2 writes (copied from a real -d page,strace run here)."""

from __future__ import annotations

from loaderdbg.process.qemu_log import GuestPages, PageRun, QemuLog, guest_maps_text

LOG = """\
host mmap_min_addr=0x1000
page layout changed following mmap
start            end              size             prot
0000005500000000-0000005502021000 0000000002021000 ---
guest_base  (nil)
page layout changed following binary load
start            end              size             prot
0000005500000000-0000005500001000 0000000000001000 r-x
0000005500001000-000000550001f000 000000000001e000 ---
000000550001f000-0000005500021000 0000000000002000 rw-
0000005502021000-0000005502022000 0000000000001000 ---
0000005502022000-0000005502822000 0000000000800000 rw-
0000005502822000-0000005502849000 0000000000027000 r-x
start_brk   0x0000000000000000
start_stack 0x0000005502821770
5537 brk(NULL) = 0x0000005500021000
5537 mmap(NULL,35119,PROT_READ,MAP_PRIVATE,4,0)page layout changed following mmap
start            end              size             prot
0000005500000000-0000005500001000 0000000000001000 r-x
0000005500001000-000000550001f000 000000000001e000 ---
000000550001f000-0000005500021000 0000000000002000 rw-
0000005502021000-0000005502022000 0000000000001000 ---
0000005502022000-0000005502822000 0000000000800000 rw-
0000005502822000-0000005502849000 0000000000027000 r-x
0000005502865000-000000550286e000 0000000000009000 r--
 = 0x0000005502865000
5537 mprotect(0x000000550001f000,4096,PROT_READ) = 0
5537 munmap(0x0000005502865000,35119) = 0
5537 mprotect(0x0000005502822000,4096,PROT_NONE) = -1 errno=12 (Cannot allocate memory)
"""


def read(tmp_path, text: str) -> QemuLog:
    path = tmp_path / "log.1"
    path.write_text(text)
    log = QemuLog(str(path))
    log.poll()
    return log


def test_the_last_table_then_the_calls_after_it(tmp_path):
    log = read(tmp_path, LOG)
    assert [(run.start, run.end, run.prot) for run in log.pages.runs] == [
        (0x5500000000, 0x5500001000, "r-x"),
        (0x5500001000, 0x550001F000, "---"),
        (0x550001F000, 0x5500020000, "r--"),  # mprotect
        (0x5500020000, 0x5500021000, "rw-"),
        (0x5502021000, 0x5502022000, "---"),
        (0x5502022000, 0x5502822000, "rw-"),
        (0x5502822000, 0x5502849000, "r-x"),  # the failed mprotect changed nothing
    ]  # and the munmap took the ld.so.cache mapping out
    assert log.start_stack == 0x5502821770


def test_a_table_inside_a_syscall_line_keeps_the_line(tmp_path):
    log = read(tmp_path, LOG)
    lines = log.take_syscall_lines()
    assert "5537 mmap(NULL,35119,PROT_READ,MAP_PRIVATE,4,0) = 0x0000005502865000" in lines
    assert lines[0] == "5537 brk(NULL) = 0x0000005500021000"
    assert len(lines) == 5 and log.take_syscall_lines() == []


def test_lines_arrive_in_pieces(tmp_path):
    path = tmp_path / "log.1"
    cut = LOG.index("5537 munmap") + 10
    path.write_text(LOG[:cut])
    log = QemuLog(str(path))
    log.poll()
    assert log.pages.prot_at(0x5502865000) == "r--"  # the munmap line is not complete yet
    generation = log.generation
    with open(path, "a") as handle:
        handle.write(LOG[cut:])
    log.poll()
    assert log.pages.prot_at(0x5502865000) is None and log.generation > generation


def test_mremap_moves_the_protection(tmp_path):
    log = read(tmp_path, LOG + "5537 mremap(0x0000005502022000,4096,8192,1,0) = 0x0000005503000000\n")
    assert log.pages.prot_at(0x5502022000) is None
    assert log.pages.prot_at(0x5503001000) == "rw-"
    assert log.pages.prot_at(0x5502023000) == "rw-"


def test_covers_needs_every_byte_on_guest_pages():
    pages = GuestPages()
    pages.replace([PageRun(0x1000, 0x3000, "r--"), PageRun(0x3000, 0x4000, "---"), PageRun(0x6000, 0x7000, "rw-")])
    assert pages.covers(0x1000, 0x3000) and pages.covers(0x3FFF, 1)
    assert not pages.covers(0x3FFF, 2) and not pages.covers(0xFFF, 2) and not pages.covers(0x7000, 1)
    pages.set_range(0x2000, 0x6800, "rwx")
    assert [(run.start, run.end, run.prot) for run in pages.runs] == [
        (0x1000, 0x2000, "r--"), (0x2000, 0x6800, "rwx"), (0x6800, 0x7000, "rw-")]
    assert [run.start for run in pages.executable()] == [0x2000]


HOST_MAPS = """\
5500000000-5500001000 r--p 00000000 fe:00 2148498                        /tmp/probe
5500001000-550001f000 ---p 00000000 00:00 0 
550001f000-5500021000 rw-p 0000f000 fe:00 2148498                        /tmp/probe
5502021000-5502022000 ---p 00000000 00:00 0 
5502022000-5502822000 rw-p 00000000 00:00 0 
5502822000-5502849000 r--p 00000000 fe:00 1458205                        /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1
55a5d34bc000-55a5d3555000 r--p 00000000 fe:00 2170990                    /usr/bin/qemu-aarch64
55a5e25ba000-55a5e26ec000 rw-p 00000000 00:00 0                          [heap]
7fd388000000-7fd38ffff000 rwxp 00000000 00:00 0 
7fd394f3e000-7fd394f64000 r--p 00000000 fe:00 339380                     /usr/lib/x86_64-linux-gnu/libc.so.6
7ffd5917d000-7ffd5919e000 rw-p 00000000 00:00 0                          [stack]
"""


def test_guest_maps_are_the_host_maps_cut_to_guest_pages(tmp_path):
    log = read(tmp_path, LOG)
    text = guest_maps_text(HOST_MAPS, log.pages, log.start_stack)
    assert text.splitlines() == [
        "5500000000-5500001000 r-xp 00000000 fe:00 2148498                        /tmp/probe",
        "5500001000-550001f000 ---p 00000000 00:00 0 ",
        # one host mapping, two guest protections: two lines, offsets following
        "550001f000-5500020000 r--p 0000f000 fe:00 2148498                        /tmp/probe",
        "5500020000-5500021000 rw-p 00010000 fe:00 2148498                        /tmp/probe",
        "5502021000-5502022000 ---p 00000000 00:00 0 ",
        "5502022000-5502822000 rw-p 00000000 00:00 0                              [stack]",
        "5502822000-5502849000 r-xp 00000000 fe:00 1458205                        "
        "/usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1",
    ]


def test_a_long_log_is_emptied_once_read_and_read_on(tmp_path):
    """qemu writes on at its own offset: the emptied start becomes a hole."""
    path = tmp_path / "log.1"
    step_line = b"--- 0 {si_signo=SIGTRAP, si_code=1, si_addr=0x0000005502820000} ---\n"
    with open(path, "wb") as qemu:
        qemu.write(LOG.encode() + step_line * 20000)  # 1.3 MB
        qemu.flush()
        log = QemuLog(str(path))
        log.poll()
        assert path.stat().st_size == 0 and log.start_stack == 0x5502821770
        qemu.write(step_line + b"5537 munmap(0x0000005502822000,4096) = 0\n")
        qemu.flush()
        log.poll()
    assert log.pages.prot_at(0x5502822000) is None and log.pages.prot_at(0x5502823000) == "r-x"
    assert log.take_syscall_lines()[-1] == "5537 munmap(0x0000005502822000,4096) = 0"
