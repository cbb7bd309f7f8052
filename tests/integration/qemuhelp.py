"""qemu-aarch64 -g started as loaderdbg's qemu target starts it, for another
client of its stub (gdb-multiarch in the cross-checks, a raw packet
connection)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time

from loaderdbg.process.qemu_target import DEFAULT_SYSROOT, find_qemu, qemu_command
from loaderdbg.process.tracee import LaunchSpec


@contextlib.contextmanager
def qemu_listening(spec: LaunchSpec):
    """qemu-aarch64 -g on spec's program with the target's argv, env,
    sysroot and no ASLR: yields the stub's socket path (its directory is a
    scratch one, removed after); qemu is killed on the way out."""
    workdir = tempfile.mkdtemp(prefix="qemu-stub-")
    try:
        command, env = qemu_command(spec, find_qemu(), DEFAULT_SYSROOT, workdir)
        qemu = subprocess.Popen(["setarch", "-R", *command], env=env, stdout=subprocess.DEVNULL)
        try:
            sock = os.path.join(workdir, "stub")
            deadline = time.monotonic() + 10
            while not os.path.exists(sock) and time.monotonic() < deadline:
                time.sleep(0.01)
            yield sock
        finally:
            qemu.kill()
            qemu.wait()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
