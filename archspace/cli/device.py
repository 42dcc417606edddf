"""``archspace device measure``: a device profile (per-part latency table) measured on this machine."""
from __future__ import annotations

import argparse

from ._out import add_format, emit


def cmd_device_measure(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..jobs import measure_device

    console = Console(stderr=True, quiet=args.quiet)
    bar = Progress(TextColumn("profiling"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                   TimeElapsedColumn(), console=console, transient=True, disable=args.quiet or not console.is_terminal)
    task = bar.add_task("parts", total=None, info="")

    def progress(done: int, total: int, text: str) -> None:
        bar.update(task, total=max(total, 1), completed=min(done, total), info=text)
        if not console.is_terminal:
            console.print(f"{done}/{total} parts: {text}")

    with bar:
        prof = measure_device(args.out, spaces=args.space or (), device=args.device, runtime=args.runtime, threads=args.threads,
                              minutes=args.minutes, samples=args.samples, networks=args.networks, warmup=args.warmup,
                              repeats=args.repeats, name=args.name, progress=progress)
    summary = {"out": str(args.out), "name": prof.name, "label": prof.label(), "unit": prof.unit,
               "entries": len(prof.entries), "parts_seen": prof.parts_seen, "complete": prof.complete,
               "networks": len(prof.networks), "correction": prof.correction.model_dump(), "seconds": round(prof.seconds, 1)}

    def text(s: dict) -> str:
        c = s["correction"]
        worst = f", worst fitted network {c['worst_fit_pct']:.1f}%" if c["worst_fit_pct"] is not None else ""
        left = "" if s["complete"] else " (time bound reached: the rest is predicted from fits; run again to resume)"
        return (f"wrote {s['out']}: {s['label']}\n{s['entries']} of {s['parts_seen']} parts timed{left}; correction "
                f"x{c['scale']:.3f} {c['per_part_ms']:+.3f} ms per part on {c['networks']} whole networks{worst}; unit: {s['unit']}; "
                f"{s['seconds']:.0f} s")

    emit(args, summary, text)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from ..jobs import GRID_WIDTH_MULTS

    s = sub.add_parser("device", help="device profiles: per-part latency tables for predicted latency")
    dsub = s.add_subparsers(dest="device_command", required=True, metavar="ACTION", parser_class=type(s))
    m = dsub.add_parser("measure", help="measure a device profile on this machine (resumable, bounded by --minutes)")
    m.add_argument("--out", required=True, help="the profile's JSON file (an existing one with the same settings resumes)")
    m.add_argument("--space", nargs="+", metavar="SPACE",
                   help="cover the parts these spaces can produce (default: every preset at widths x"
                        + "/".join(f"{w:g}" for w in GRID_WIDTH_MULTS) + ")")
    m.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    m.add_argument("--runtime", default="eager", choices=["eager", "onnxrt"], help="what runs the parts")
    m.add_argument("--threads", type=int, default=1, help="CPU threads while timing")
    m.add_argument("--minutes", type=float, default=10.0, help="time bound of the measuring")
    m.add_argument("--samples", type=int, default=300, help="random specs drawn per space to find its parts")
    m.add_argument("--networks", type=int, default=30, help="whole networks timed for the correction")
    m.add_argument("--warmup", type=int, default=3, help="untimed passes per part")
    m.add_argument("--repeats", type=int, default=15, help="timed passes per part (interleaved, median)")
    m.add_argument("--name", help="the profile's name (default: the file's stem)")
    add_format(m)
    m.add_argument("--quiet", action="store_true", help="no progress display")
    m.set_defaults(func=cmd_device_measure)
