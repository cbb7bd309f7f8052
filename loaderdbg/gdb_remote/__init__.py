"""The GDB remote serial protocol, without transport: framing and codecs
shared by loaderdbg's gdb server (loaderdbg/serve/) and its qemu stub client."""
