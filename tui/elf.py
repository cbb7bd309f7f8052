"""ELF tab: the hand-off check (at ld.so's entry) with findings coloured by
severity, then per loaded object what the loader sees and did: type, entry,
interpreter, soname, DT_NEEDED, DT_FLAGS/FLAGS_1, RELRO (protected yet?),
TLS block, SFrame (PT_GNU_SFRAME), GNU_STACK, build-id; and the ifunc
(IRELATIVE) choices made so far."""

from __future__ import annotations

from rich.console import Console, Group
from rich.text import Text

from loaderdbg.printable import printable
from loaderdbg_tui.describe import hex_short
from loaderdbg_tui.fit import Column, FittedTable
from loaderdbg_tui.lines_view import LinesView
from loaderdbg_tui.pane import ViewPane
from loaderdbg_tui.reports import handoff_text
from loaderdbg_tui.view import StopView


def _path(app, path: str) -> str:
    hook = getattr(app, "present_volatile", None)
    return hook("path", path) if hook is not None else path


def object_text(obj, app=None) -> Text:
    """One object: a header line and what its ObjectDetail says."""
    detail = getattr(obj, "detail", None)
    text = Text()
    text.append(printable(obj.name), style="bold")
    role = " (ld.so)" if obj.is_ldso else " (ELF embedded at file offset " + hex_short(obj.elf_offset) + ")" \
        if obj.elf_offset else ""
    text.append(role, style="magenta" if obj.is_ldso else "yellow")
    text.append(f"  base {obj.base:#x}  ")
    text.append(_path(app, printable(obj.path)) + "\n", style="dim")
    if detail is None:
        return text
    facts = [detail.type, "no entry point (e_entry 0)" if detail.entry is None else f"entry {detail.entry:#x}"]
    if detail.interp:
        facts.append(f"interp {detail.interp}")
    if detail.soname:
        facts.append(f"soname {detail.soname}")
    text.append("  " + "  ".join(facts) + "\n")
    if detail.needed:
        text.append("  needs " + ", ".join(detail.needed) + "\n")
    flags = [*detail.flags, *detail.flags_1, *detail.gnu_flags_1]
    if flags:
        text.append("  flags " + " ".join(flags) + "\n")
    if detail.relro is not None:
        text.append(f"  RELRO {detail.relro.start:#x}-{detail.relro.end:#x} ")
        text.append("read-only now\n" if detail.relro.protected else "still writable\n",
                    style="green" if detail.relro.protected else "yellow")
    if detail.tls is not None:
        text.append(f"  TLS block {detail.tls.size:#x} bytes ({detail.tls.init_size:#x} initialised), "
                    f"align {detail.tls.align}\n")
    unwind = []
    if detail.sframe is not None:
        unwind.append(f"SFrame v{detail.sframe.version} ({detail.sframe.num_fdes} functions)")
    elif detail.sframe_size:
        unwind.append("PT_GNU_SFRAME")
    if detail.has_eh_frame_hdr:
        unwind.append("eh_frame_hdr")
    if detail.gnu_stack:
        unwind.append(f"GNU_STACK {detail.gnu_stack}")
    if unwind:
        text.append("  " + ", ".join(unwind) + "\n", style="red" if detail.gnu_stack == "RWE" else "")
    if detail.build_id:
        text.append(f"  build-id {detail.build_id}\n", style="dim")
    return text


IFUNC_COLUMNS = (Column("object", free=True, shrink="left", minimum=8), Column("slot"),
                 Column("resolver", free=True), Column("chose", free=True), Column("state"))


def ifunc_table(view: StopView) -> FittedTable | None:
    """The IRELATIVE choices: a FittedTable (its rows wrap, never cut a
    number; and it is laid out in a millisecond where a Rich Table of
    gdb's 62 took 27)."""
    choices = getattr(view.snapshot, "ifuncs", ())
    if not choices:
        return None
    rows = [(Text(choice.object), hex_short(choice.address),
             Text(choice.resolver_name or hex_short(choice.resolver)),
             Text(choice.chosen_name or hex_short(choice.chosen)), Text(choice.state))
            for choice in choices]
    return FittedTable("ifunc choices (IRELATIVE)", IFUNC_COLUMNS, rows)


def _identity(view: StopView) -> tuple:
    """What this tab shows (relocation totals change every step while ld.so
    relocates; they are not shown here)."""
    snap = view.snapshot
    reached = any(e.kind == "milestone" and e.name == "ldso-entry" for e in snap.events)
    return (snap.handoff, view.alive, view.crashed, reached, getattr(snap, "ifuncs", ()),
            tuple((o.name, o.path, o.base, o.elf_offset, o.is_ldso, getattr(o, "detail", None))
                  for o in snap.objects))


def rendered_lines(console: Console, renderable, width: int) -> list[Text]:
    """renderable as Rich lays it out at width, one Text per line."""
    lines = console.render_lines(renderable, console.options.update(width=max(width, 1), height=None), pad=False)
    return [Text.assemble(*((segment.text, segment.style) for segment in line if not segment.control))
            for line in lines]


class ElfPane(ViewPane, LinesView):
    """Hand-off check and objects. Lines, not a Static: a Static whose
    height changes lays the whole screen out again (60 ms at 160x48) each
    time an object is mapped while this tab is up."""

    DEFAULT_CLASSES = "pane"
    BORDER_TITLE = "ELF / hand-off"

    def __init__(self, **kwargs) -> None:
        super().__init__(show_cursor=False, **kwargs)
        self._drawn_key: tuple | None = None  # (what is shown, width) as drawn

    def draw(self, view: StopView, previous: StopView | None) -> None:
        # The scrollbar's column is kept free: the text does not depend on
        # whether it shows.
        width = self.content_size.width - self.styles.scrollbar_size_vertical
        key = (_identity(view), width)
        if key == self._drawn_key:
            return
        self._drawn_key = key
        parts = [handoff_text(view), Text("Loaded objects", style="bold underline")]
        parts.extend(object_text(obj, self.app) for obj in view.snapshot.objects)
        lines = rendered_lines(self.app.console, Group(*parts), width)
        table = ifunc_table(view)
        if table is not None:
            lines.extend(table.lines(width))
        self.set_lines(lines)
        report = view.snapshot.handoff
        if report.checked:
            self.set_titles(subtitle="hand-off passes" if report.ok else "hand-off FAILS")
        else:
            self.set_titles(subtitle="")
