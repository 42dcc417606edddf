"""Commands that measure one network or several: profile (cost and latency) and evaluate (accuracy)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..vocab import CONVENTIONS, COUNTED_CONVENTIONS, EVALUATORS
from ._out import add_format, emit, rows


def _specs(items: list[str]) -> dict:
    from ..spec.io import load_spec

    specs = {}
    for item in items:
        spec = load_spec(item)
        specs[spec.name or Path(item).stem] = spec
    return specs


def cmd_profile(args: argparse.Namespace) -> int:
    from rich.console import Console

    from ..measure.latency.settings import LatencySettings
    from ..measure.profile import by_module, profile

    specs = _specs(args.specs)
    if args.by_module:
        conventions = [c for c in args.flops if c in CONVENTIONS]
        out = by_module(specs, args.resolution, conventions)
        emit(args, out, lambda out: _module_tables(out, conventions, args.resolution))
        return 0
    runtime = args.runtime if args.runtime != "onnxrt" else f"onnxrt-{'cuda' if args.device.startswith('cuda') else 'cpu'}"
    settings = None if args.no_latency else LatencySettings(
        device=args.device, batch=args.batch, resolution=args.resolution, dtype=args.dtype, runtime=runtime,
        threads=args.threads, warmup=args.warmup, repeats=args.repeats, channels_last=args.channels_last)
    device_profile = None
    if args.device_profile:
        from ..measure.latency.model import load_profile
        from ..spec.errors import SpecError

        try:
            device_profile = load_profile(args.device_profile)
        except ValueError as exc:
            raise SpecError(f"--device-profile: {exc}") from None
    console = Console(stderr=True, quiet=args.quiet)
    with console.status("building and counting") as status:
        out = profile(specs, settings, flops=args.flops, calibrate=args.calibrate, calibration_file=args.calibration,
                      status=status.update, device_profile=device_profile)
    if args.format == "json":
        emit(args, out if len(out) > 1 else next(iter(out.values())) | {"name": next(iter(out))}, str)
        return 0
    print(_profile_table(out, args.flops))
    return 0


def _profile_table(out: dict, flops: list[str]) -> str:
    timed = all(d.get("latency") for d in out.values())
    calibrated = timed and any(d["latency"].get("raw_median_ms") is not None for d in out.values())
    heads = ["model", "params", *(f"GMACs {c}" for c in flops)]
    heads += ["median", "p90", "cv", "img/s"] if timed else []
    heads += ["raw median ms"] if calibrated else []
    predicted = all("predicted_ms" in d for d in out.values())
    heads += ["predicted ms"] if predicted else []
    body = []
    for name, d in out.items():
        row = [name, f"{d['params']:,}", *(f"{d['flops'][c] / 1e9:.4f}" for c in flops)]
        if timed:
            lat = d["latency"]
            row += [f"{lat['median_ms']:.2f}", f"{lat['p90_ms']:.2f}", f"{lat['cv']:.3f}", f"{lat['images_per_s']:.1f}"]
        if calibrated:
            row.append(f"{d['latency']['raw_median_ms']:.2f}")
        if predicted:
            row.append(f"{d['predicted_ms']:.2f}")
        body.append(row)
    lines = [rows(heads, body)]
    if timed:
        first = next(iter(out.values()))["latency"]
        p = first["protocol"]
        lines.append(f"protocol: {p['device_name']}, {p['runtime']}, {p['dtype']}, batch {p['batch']}, {p['resolution']} px, "
                     f"{p['threads']} thread(s), warm-up {p['warmup']}, {p['repeats']} repeats interleaved, statistic "
                     f"{p['statistic']}; FLOPs as MACs at batch 1")
        lines.append(f"unit of median and p90: {first.get('unit', 'wall ms')}")
        cal = p.get("calibration")
        if cal:
            lines.append(f"calibrated: {cal['reference']} took {cal['reference_ms']:.3f} ms when calibrated; the machine ran "
                         f"at {first['machine_speed']:.2f}x that speed during timing (raw median: uncalibrated wall clock)")
    if predicted:
        first = next(iter(out.values()))["predicted"]
        lines.append(f"predicted: latency model of device profile {first['label']}, in {first['unit']}")
    return "\n".join(lines)


def _module_tables(out: dict, conventions: list[str], resolution: int) -> str:
    parts = []
    for name, mods in out.items():
        total = {k: sum(r[k] for r in mods) for k in ("params", *conventions)}
        body = [[r["module"], r["kind"], r["map"], f"{r['params']:,}", *(f"{r[c] / 1e6:.2f}" for c in conventions),
                 f"{100 * r[conventions[0]] / max(total[conventions[0]], 1):.1f}"] for r in mods]
        body.append(["total", "", "", f"{total['params']:,}", *(f"{total[c] / 1e6:.2f}" for c in conventions), "100.0"])
        parts.append(f"{name} at {resolution} px, batch 1\n"
                     + rows(["module", "kind", "map", "params", *(f"MMACs {c}" for c in conventions), f"% {conventions[0]}"],
                            body))
    return "\n".join(parts)


class TrainingBar:
    """A rich bar of a training run's optimizer steps (the events carry whole-run counts), on stderr."""

    def __init__(self, label: str, enabled: bool) -> None:
        self.label, self.enabled, self._bar, self._task = label, enabled, None, None

    def __enter__(self) -> "TrainingBar":
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            console = Console(stderr=True)
            self._bar = Progress(TextColumn(self.label), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                                 TimeRemainingColumn(), transient=True, console=console, disable=not console.is_terminal)
            self._task = self._bar.add_task("train", total=None, info="")
            self._bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()

    def event(self, event) -> None:
        if self._bar is not None and event.kind == "step":
            self._bar.update(self._task, total=event.steps, completed=event.step, info=event.info())


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..evaluate import TrainBudget, evaluate
    from ..spec.io import load_spec

    spec = load_spec(args.spec)
    overrides = {k: v for k, v in (("epochs", args.epochs), ("resolution", args.resolution), ("seed", args.seed),
                                   ("train_subset", args.train_subset)) if v is not None}
    budget = TrainBudget.for_device(args.device, **overrides)
    label = spec.name or args.spec
    with TrainingBar(f"train {label}", enabled=args.evaluator == "train" and not args.quiet) as bar:
        result = evaluate(spec, args.evaluator, budget=budget, dataset=args.dataset, dataset_root=args.dataset_root,
                          device=args.device, progress=bar.event)
    emit(args, result.model_dump(mode="json"), lambda d: _evaluated(label, d) + "\n" + result.describe())
    return 0


def _evaluated(label: str, d: dict) -> str:
    if "top1" not in d:  # a zero-cost proxy
        return f"{label}: {d['proxy']} = {d['score']:.6g} ({d['time_s']:.2f}s, batch {d['batch_size']} at {d['resolution']} px)"
    line = f"{label}: {d['status']}" + (f" ({d['reason']})" if d.get("reason") else "")
    if d.get("top1") is not None:
        line += f", top-1 {100 * d['top1']:.2f}%, top-5 {100 * d['top5']:.2f}%"
    return line + f", {d['epochs_done']} epoch(s), {d['wall_time_s']:.1f}s, {d['images_per_s']:.0f} img/s"


def register(sub: argparse._SubParsersAction) -> None:
    from ..measure.latency.settings import LatencySettings

    default = {k: f.default for k, f in LatencySettings.model_fields.items()}
    s = sub.add_parser("profile", help="params, FLOPs in named conventions, latency records; several models side by side")
    s.add_argument("specs", nargs="+", help="spec files or preset names")
    s.add_argument("--flops", nargs="+", default=list(CONVENTIONS), choices=COUNTED_CONVENTIONS, help="MAC conventions")
    s.add_argument("--device", default=default["device"], help="cpu or cuda[:N]")
    s.add_argument("--runtime", default=default["runtime"], choices=["eager", "compile", "onnxrt"], help="what runs the model")
    s.add_argument("--dtype", default=default["dtype"], choices=["fp32", "fp16", "bf16"], help="inference dtype")
    s.add_argument("--batch", type=int, default=default["batch"], help="batch size")
    s.add_argument("--resolution", type=int, default=default["resolution"], help="input size (px)")
    s.add_argument("--threads", type=int, default=default["threads"], help="CPU threads while timing")
    s.add_argument("--warmup", type=int, default=default["warmup"], help="untimed passes per model")
    s.add_argument("--repeats", type=int, default=default["repeats"], help="timed passes per model (interleaved)")
    s.add_argument("--channels-last", action="store_true", help="channels-last memory format")
    s.add_argument("--no-latency", action="store_true", help="count only")
    s.add_argument("--by-module", action="store_true",
                   help="a table of params and MACs per module (stem, downsamples, every block, head) instead")
    s.add_argument("--calibrate", action=argparse.BooleanOptionalAction, default=True,
                   help="CPU: rescale latencies by an interleaved reference workload")
    s.add_argument("--calibration", metavar="FILE",
                   help="CPU: reuse the calibration in FILE so separate runs share one unit; measured and saved there if missing")
    s.add_argument("--device-profile", metavar="FILE",
                   help="also print predicted_ms from this device profile (archspace device measure); measured CPU "
                        "latency then uses the profile's calibration, so both are in one unit")
    add_format(s)
    s.add_argument("--quiet", action="store_true", help="no status display")
    s.set_defaults(func=cmd_profile)

    s = sub.add_parser("evaluate", help="accuracy of a spec: proxy training or a zero-cost proxy on real data")
    s.add_argument("spec", help="spec file or preset name")
    s.add_argument("--evaluator", default="train", choices=EVALUATORS, help="proxy training or a zero-cost proxy")
    s.add_argument("--dataset", default="fashion-mnist", help="fashion-mnist, cifar10 or folder:PATH")
    s.add_argument("--dataset-root", help="where the dataset lies (default: the Debian location for Fashion-MNIST)")
    s.add_argument("--epochs", type=int, help="training epochs (default: the device's budget)")
    s.add_argument("--resolution", type=int, help="training resolution (default: the device's budget)")
    s.add_argument("--train-subset", type=int, help="training images (default: the device's budget)")
    s.add_argument("--seed", type=int, help="training seed (default: the budget's)")
    s.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    add_format(s)
    s.add_argument("--quiet", action="store_true", help="no progress display")
    s.set_defaults(func=cmd_evaluate)
