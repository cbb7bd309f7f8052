"""`loaderdbg serve`: the GDB remote serial protocol over a session, so gdb
and pwndbg debug a startup with our engine underneath: a recording with
reverse execution and watchpoints answered from its write index, or a live
process whose library list and auxv come from our link_map walk."""
