"""Finding a DWARF line's source file as gdb does (issue 15.7): the recorded
path, the compilation directory, then each --source-dir joined with the
path's tails; reading its lines (bounded, undecodable bytes replaced)."""

from __future__ import annotations

import os

from loaderdbg.analysis.source_lines import find_source, source_file, source_text
from loaderdbg.decode.dwarf_lines import SourceLine


def test_an_absolute_path_is_used_as_it_is(tmp_path):
    source = tmp_path / "a.c"
    source.write_text("int a;\nint b;\n")
    assert source_text(SourceLine(str(source), 2)) == "int b;"


def test_a_relative_name_is_joined_with_an_absolute_compilation_directory(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "b.c").write_text("one\ntwo\nthree\n")
    line = SourceLine("./src/b.c", 3, comp_dir=str(tmp_path))
    assert find_source(line) == str(tmp_path / "src" / "b.c")
    assert source_text(line) == "three"


def test_a_given_directory_finds_the_tail_of_a_build_path(tmp_path):
    # Built as /build/proj/elf/rtld.c; the checkout is tmp_path/proj.
    checkout = tmp_path / "proj"
    (checkout / "elf").mkdir(parents=True)
    (checkout / "elf" / "rtld.c").write_text("x\n")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "rtld.c").write_text("wrong\n")
    line = SourceLine("/build/proj/elf/rtld.c", 1, comp_dir="/build/proj")
    assert find_source(line) is None
    # Directories keep their order (every tail under one, then the next).
    assert find_source(line, [str(checkout), str(tmp_path / "elsewhere")]) == str(checkout / "elf" / "rtld.c")
    assert find_source(line, [str(tmp_path / "elsewhere"), str(checkout)]) == str(tmp_path / "elsewhere" / "rtld.c")


def test_a_relative_compilation_directory_is_tried_under_a_given_directory(tmp_path):
    (tmp_path / "elf").mkdir()
    (tmp_path / "elf" / "dl-load.c").write_text("a\nb\n")
    line = SourceLine("dl-load.c", 2, comp_dir="./elf")
    assert source_text(line, [str(tmp_path)]) == "b"


def test_lines_past_the_end_a_directory_and_bad_bytes(tmp_path):
    source = tmp_path / "c.c"
    source.write_bytes(b"ok\n\xff\x1b[2Jbad\n")
    line = SourceLine(str(source), 2)
    found = source_file(line)
    assert found is not None and found.path == str(source)
    assert found.line(2) == "\ufffd\x1b[2Jbad"  # decoded, not yet escaped (the display escapes)
    assert found.line(3) is None and found.line(0) is None
    assert source_text(SourceLine(str(source), 9)) is None
    assert source_text(SourceLine(str(tmp_path), 1)) is None  # a directory is not a source file


def test_a_changed_file_is_read_again(tmp_path):
    source = tmp_path / "d.c"
    source.write_text("old\n")
    line = SourceLine(str(source), 1)
    assert source_text(line) == "old"
    source.write_text("newer\n")
    os.utime(source, ns=(1, 1))  # a different mtime even within the clock's resolution
    assert source_text(line) == "newer"
