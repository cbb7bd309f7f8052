# loaderdbg: every target builds what it needs first, on a fresh machine as root.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
BUILD := $(CURDIR)/build
STAMPS := .stamps
DEMO := build/fixtures/execsolib/glibc-O2/libexecsolib.so

# command -> Debian package providing it
SYSTEM_TOOLS := gcc:gcc make:make musl-gcc:musl-tools gdb:gdb readelf:binutils objdump:binutils strace:strace tmux:tmux
# aarch64 (issue 22): cross compiler, qemu-user, gdb for the qemu stub, and
# lld for the RELR variant (GNU ld 2.40 has no RELR on aarch64).
SYSTEM_TOOLS += aarch64-linux-gnu-gcc:gcc-aarch64-linux-gnu qemu-aarch64:qemu-user \
	gdb-multiarch:gdb-multiarch ld.lld:lld
# Packages with no command to look for: package -> a file it installs.
# libc6-dbg: ld.so's and libc's separate debug files (names for ld.so's code).
SYSTEM_FILES := libc6-dbg:/usr/lib/debug/.build-id
# The arm64 glibc that qemu-aarch64 -L /usr/aarch64-linux-gnu runs programs with.
SYSTEM_FILES += libc6-dev-arm64-cross:/usr/aarch64-linux-gnu/lib/crt1.o
# Packages of another architecture (Debian multiarch; sysdeps adds the
# architecture to dpkg first): arch/package -> a file it installs. Debian's
# arm64 musl, for the aarch64 fixture's musl variant (aarch64-linux-musl-gcc
# and the loader /lib/ld-musl-aarch64.so.1 that qemu falls back to when the
# -L sysroot has no such file).
FOREIGN_FILES := arm64/musl:/lib/aarch64-linux-musl/libc.so \
	arm64/musl-dev:/usr/lib/aarch64-linux-musl/crt1.o

.PHONY: all sysdeps venv fixtures fixtures-big demo test bench recordings clean

all: fixtures venv

# Install missing system packages: one `apt-get update`, then one install.
sysdeps:
	@missing=""; \
	for pair in $(SYSTEM_TOOLS); do \
	  cmd=$${pair%%:*}; pkg=$${pair##*:}; \
	  command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$pkg"; \
	done; \
	for pair in $(SYSTEM_FILES); do \
	  pkg=$${pair%%:*}; file=$${pair#*:}; \
	  test -e $$file || missing="$$missing $$pkg"; \
	done; \
	archs=""; \
	for pair in $(FOREIGN_FILES); do \
	  spec=$${pair%%:*}; file=$${pair#*:}; arch=$${spec%%/*}; \
	  test -e $$file || { missing="$$missing $${spec#*/}:$$arch"; archs="$$archs $$arch"; }; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then echo "need root to install:$$missing" >&2; exit 1; fi; \
	  for arch in $$(echo $$archs | tr " " "\n" | sort -u); do \
	    dpkg --print-foreign-architectures | grep -qx $$arch || dpkg --add-architecture $$arch; \
	  done; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$(echo $$missing | tr ' ' '\n' | sort -u) >/dev/null; \
	fi

venv: $(STAMPS)/venv

# pip builds the step helper (C) in place, hence gcc first.
$(STAMPS)/venv: pyproject.toml loaderdbg/process/_stepper.c | sysdeps
	@mkdir -p $(STAMPS)
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e '.[test]'
	@touch $@

fixtures: sysdeps
	$(MAKE) -s -C tests/fixtures/execsolib OUT=$(BUILD)/fixtures/execsolib
	$(MAKE) -s -C tests/fixtures/execsolib-aarch64 OUT=$(BUILD)/fixtures/execsolib
	$(MAKE) -s -C tests/fixtures/zoo OUT=$(BUILD)/fixtures/zoo
	$(MAKE) -s -C tests/fixtures/threads OUT=$(BUILD)/fixtures/threads
	$(MAKE) -s -C tests/fixtures/qemu OUT=$(BUILD)/fixtures/qemu

# The scaling fixture (issue 19): 20 libraries, 0.5M relocations; about a
# minute of gcc, so neither `make fixtures` nor `make test` builds it
# (bench/scale.py does on first use).
fixtures-big: sysdeps
	$(PYTHON) tests/fixtures/big/generate.py $(BUILD)/fixtures/big

# Opens the TUI stopped at the demo's first instruction. Without a terminal
# (CI, a pipe) there is nothing to draw: print the ld.so hand-off report.
demo: venv fixtures
	@if [ -t 0 ] && [ -t 1 ]; then \
	  $(VENV)/bin/loaderdbg run $(DEMO) hello world; \
	else \
	  echo "no terminal: printing the report instead of opening the TUI"; \
	  $(VENV)/bin/loaderdbg inspect --at ldso-entry $(DEMO) hello world; \
	fi

# pytest exits 5 when it collected nothing: that must fail, not pass quietly.
test: venv fixtures
	@$(VPY) -m pytest -q -p no:cacheprovider tests; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

# Ratios measured side by side in one run; not timed tests.
bench: venv fixtures fixtures-big
	$(VPY) bench/stepping.py
	$(VPY) bench/record.py
	$(VPY) bench/tui.py
	$(VPY) bench/tui.py --mode entry --program /usr/bin/gdb --args --version
	$(VPY) bench/tui.py --mode relocs --program /usr/bin/gdb --args --version
	$(VPY) bench/scale.py
	$(VPY) bench/qemu_step.py
	$(VPY) bench/record_aarch64.py
	$(VPY) bench/serve.py

recordings: venv fixtures
	$(VPY) -m loaderdbg.record.samples recordings

clean:
	rm -rf build $(STAMPS) $(VENV) .pytest_cache .hypothesis loaderdbg/process/_stepper.*.so
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
