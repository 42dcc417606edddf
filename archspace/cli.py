"""Command line: thin subcommands over the library; bad input -> one line on stderr, exit 2."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from .spec.errors import SpecError
from .vocab import CONVENTIONS, COUNTED_CONVENTIONS, EVALUATORS


class UsageError(Exception):
    """Bad command-line input; printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line instead of usage + message
        raise UsageError(f"{self.prog}: {message}")


def _emit(args: argparse.Namespace, data: Any, table: Callable[[Any], str]) -> None:
    if getattr(args, "format", "table") == "json":
        print(json.dumps(data, indent=2))
    else:
        print(table(data))


def _rows(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    fmt = lambda r: "  ".join(c.rjust(w) if c.replace(",", "").replace(".", "").isdigit() else c.ljust(w) for c, w in zip(r, widths))
    return "\n".join([fmt(list(headers)), fmt(["-" * w for w in widths])] + [fmt(r) for r in cells])


def summary(spec) -> dict:
    """What ``archspace build`` reports: params, widths, per-stage block kinds, counts and order."""
    from .nn.build import HybridNet
    import torch

    with torch.device("meta"):
        model = HybridNet(spec)
    return {
        "name": spec.name,
        "params": sum(p.numel() for p in model.parameters()),
        "depth": spec.depth,
        "stride": spec.stride,
        "stem": spec.stem.kind,
        "stages": [
            {"width": s.width, "depth": s.depth, "counts": s.counts(), "pattern": s.pattern,
             "kinds": [b.kind for b in s.blocks]}
            for s in spec.stages
        ],
    }


def _summary_table(d: dict) -> str:
    rows = [[i + 1, s["width"], s["depth"], " ".join(f"{k}={v}" for k, v in s["counts"].items()), s["pattern"]]
            for i, s in enumerate(d["stages"])]
    head = f"{d['name'] or '(unnamed)'}: {d['params']:,} params, {d['depth']} blocks, stem {d['stem']}, stride {d['stride']}"
    return head + "\n" + _rows(["stage", "width", "depth", "counts", "order"], rows)


def cmd_validate(args: argparse.Namespace) -> int:
    from .spec.io import load_spec, read_yaml

    data = read_yaml(args.file) if Path(args.file).is_file() else None
    if isinstance(data, dict) and "params" in data and "objectives" in data:  # a search space
        from .search.space import grid_size, load_space

        space = load_space(args.file)
        d = {"file": args.file, "ok": True, "kind": "space", "name": space.name, "params": [p.name for p in space.params],
             "objectives": [o.key for o in space.objectives], "constraints": space.constraints.names,
             "references": space.references, "grid_size": grid_size(space) if all(
                 p.choices is not None or p.is_int for p in space.params) else None}
        _emit(args, d, lambda d: f"ok: {args.file}: space {d['name']}, {len(d['params'])} parameters "
                                 f"({', '.join(d['params'])}), objectives {', '.join(d['objectives'])}")
        return 0
    spec = load_spec(args.file)
    d = summary(spec)
    _emit(args, {"file": args.file, "ok": True, **d},
          lambda d: f"ok: {args.file}: {d['params']:,} params, stages " + " | ".join(s["pattern"] for s in d["stages"]))
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from .spec.io import dump_spec, load_spec

    spec = load_spec(args.spec)
    if args.format == "yaml":
        print(dump_spec(spec), end="")
        return 0
    _emit(args, summary(spec), _summary_table)
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    from .spec.io import load_spec, preset_names, preset_path

    out = []
    for name in preset_names():
        d = summary(load_spec(name))
        lines = preset_path(name).read_text().splitlines()
        first = " ".join(l.lstrip("# ") for l in lines[: next(i for i, l in enumerate(lines) if not l.startswith("#"))])
        out.append({"name": name, "params": d["params"], "depth": d["depth"],
                    "patterns": [s["pattern"] for s in d["stages"]], "about": first})
    _emit(args, out, lambda rows: _rows(["preset", "params", "blocks", "about"],
                                        [[r["name"], f"{r['params']:,}", r["depth"], r["about"].split(". ")[0][:80]] for r in rows]))
    return 0


def _load_checkpoint(path: Path) -> dict:
    import numpy as np
    import torch

    if not path.exists():
        raise UsageError(f"{path}: no such checkpoint")
    if path.suffix == ".npz":
        z = np.load(path, allow_pickle=False)
        keys = [k for k in z.files if k.startswith("state/")]
        return {k[len("state/"):]: z[k] for k in keys} if keys else {k: z[k] for k in z.files}
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for bad pickles
        raise UsageError(f"{path}: cannot load as a weights-only checkpoint ({str(exc).splitlines()[0][:120]})") from None
    for key in ("model", "state_dict", "model_ema"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            return obj[key]
    if not isinstance(obj, dict):
        raise UsageError(f"{path}: expected a state dict, found {type(obj).__name__}")
    return obj


def cmd_convert(args: argparse.Namespace) -> int:
    import torch

    from .nn.build import HybridNet
    from .files import atomic_write
    from .nn.convert import convert_official
    from .spec.io import load_spec

    spec = load_spec(args.spec)
    out = Path(args.out)
    if out.suffix not in (".pth", ".pt", ".npz"):
        raise UsageError(f"--out: {out} must end in .pth, .pt or .npz")
    state = convert_official(_load_checkpoint(Path(args.checkpoint)), spec)
    model = HybridNet(spec)
    model.load_state_dict({k: v.to(torch.float32) if v.is_floating_point() else v for k, v in state.items()})

    def write(tmp: str) -> None:
        if out.suffix == ".npz":
            import numpy as np
            np.savez(tmp, **{k: v.numpy() for k, v in state.items()})
        else:
            torch.save(state, tmp)

    atomic_write(out, write)
    values = sum(v.numel() for v in state.values() if v.is_floating_point())
    _emit(args, {"file": str(out), "tensors": len(state), "values": values},
          lambda d: f"wrote {out}: {d['tensors']} tensors, {d['values']:,} values")
    return 0


def _space_with_overrides(args: argparse.Namespace):
    """The space of a search command with the CLI's overrides applied."""
    from .search.space import Space, load_space

    space = load_space(args.space)
    update: dict[str, Any] = {}
    if args.trials is not None or args.timeout is not None:
        update["budget"] = space.budget.model_copy(update={k: v for k, v in (("trials", args.trials), ("timeout_s", args.timeout)) if v is not None})
    if args.sampler is not None:
        update["sampler"] = space.sampler.model_copy(update={"kind": args.sampler})
    if args.seed is not None:
        update["seed"] = args.seed
    if update:
        space = Space.model_validate({**space.model_dump(), **{k: (v.model_dump() if hasattr(v, "model_dump") else v) for k, v in update.items()}})
    return space


def cmd_search(args: argparse.Namespace) -> int:
    from .report.run import make_report
    from .search.progress import SearchProgress
    from .search.rundir import prepare_run

    if args.trials is not None and args.trials < 1:
        raise UsageError("--trials: must be at least 1")
    if args.workers < 1:
        raise UsageError("--workers: must be at least 1")
    if args.workers > 1 and args.backend == "ray":
        raise UsageError("--workers: the Ray backend takes its concurrency from the cluster (leave --workers out)")
    if args.log and (args.log[0] != "tensorboard" or len(args.log) > 2):
        raise UsageError("--log: use --log tensorboard [DIR]")
    space = _space_with_overrides(args)
    run_dir = prepare_run(space, Path(args.run_dir) if args.run_dir else None, storage=args.storage, backend=args.backend)
    progress = SearchProgress(f"search {space.name}", enabled=not args.quiet, force=args.progress)
    log = None
    if args.log:
        from .search.tracking import TensorBoardLog

        log = TensorBoardLog(Path(args.log[1]) if len(args.log) > 1 else run_dir / "tensorboard")
    if args.backend == "ray":
        from .search.ray_engine import run_ray

        summary = run_ray(space, run_dir, address=args.address, storage=args.storage, progress=progress,
                          cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial, log=log)
    else:
        from .search.engine import run_search

        helpers = _start_workers(args, run_dir) if args.workers > 1 else []
        try:
            summary = run_search(space, run_dir, storage=args.storage, progress=progress,
                                 worker_index=0 if helpers else args.worker_index, log=log)
        finally:
            failed = [p.wait() for p in helpers]
        if any(failed):
            print(f"archspace: warning: {sum(1 for c in failed if c)} of {len(helpers)} helper worker(s) exited with an error",
                  file=sys.stderr)
    if space.references and summary.get("trials") and args.worker_index in (None, 0):
        _measure_references(run_dir, space, space.references, args.storage, quiet=args.quiet)
    files = make_report(run_dir, space) if summary.get("trials") else []
    from .report.run import reference_rows

    refs = reference_rows(run_dir, space) if summary.get("trials") else []
    if args.format == "json":
        print(json.dumps({**summary, "run_dir": str(run_dir), "files": [str(f) for f in files], "references": refs}, indent=2))
    else:
        print(f"{space.name}: {summary['complete']} complete of {summary['trials']} trials, Pareto front {summary['front']}; "
              f"results in {run_dir}/ (trials.csv, pareto.csv, pareto/*.yaml, {', '.join(sorted({f.stem for f in files}))})")
        _print_fidelity(run_dir)
        for r in refs:
            print(f"reference {r['reference']}: {r['standing']}")
    if summary.get("trials") and not summary.get("complete"):
        reasons = summary.get("reasons") or {}
        common = max(reasons, key=reasons.get) if reasons else "unknown"
        print(f"archspace: error: no trial completed ({summary['trials']} ended; most common reason: {common})", file=sys.stderr)
        return 3
    return 0


def _start_workers(args: argparse.Namespace, run_dir: Path) -> list:
    """Helper worker processes for --workers N: the same search on the same storage, indices 1..N-1."""
    import subprocess

    argv = [a for a in (args.argv or []) if a]
    out = []
    for i in range(1, args.workers):
        cmd = [sys.executable, "-m", "archspace.cli", *_without_workers(argv), "--worker-index", str(i), "--quiet",
               "--run-dir", str(run_dir)]
        out.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL))
    return out


def _without_workers(argv: list[str]) -> list[str]:
    """The command line less --workers/--run-dir/--format/--progress (each helper gets its own)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in ("--workers", "--run-dir", "--format", "--worker-index"):
            skip = True
            continue
        if a.startswith(("--workers=", "--run-dir=", "--format=", "--worker-index=")) or a in ("--progress", "--quiet"):
            continue
        out.append(a)
    return out


def _load_run(args: argparse.Namespace):
    """The space and study rows of a run directory, loading (never creating) its study."""
    from .report.run import run_space
    from .search.engine import open_study, rows_and_specs

    run_dir = Path(args.run_dir)
    space = run_space(run_dir)
    storage = getattr(args, "storage", None)
    if storage or (run_dir / "study.db").exists():
        return run_dir, space, rows_and_specs(open_study(space, run_dir, storage, create=False), space.workers.max_retries)
    return run_dir, space, None


def _measure_references(run_dir: Path, space, names: list[str], storage: Optional[str], quiet: bool = False) -> None:
    """Train and time reference networks under the run's protocol, with the latency calibration its trials used."""
    from .report.references import measure_references
    from .search.trial import latency_calibration

    calibration = None
    if space.measure.latency and space.measure.calibrate:
        ray_file = run_dir / "latency_calibration.json"  # the Ray backend keeps it there
        if ray_file.exists():
            calibration = latency_calibration(space, json.loads(ray_file.read_text()))
        else:
            from .search.engine import open_study, study_calibration

            calibration = study_calibration(open_study(space, run_dir, storage, create=False), space)
    say = None if quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    measure_references(run_dir, space, names, calibration, say=say)


def cmd_report(args: argparse.Namespace) -> int:
    from .report.run import make_report, reference_rows
    from .search.store import write_results

    run_dir, space, loaded = _load_run(args)
    if loaded is not None:
        write_results(run_dir, space, *loaded)
    elif not (run_dir / "trials.csv").exists():
        raise UsageError(f"{run_dir}: no trials yet")
    names = [n for n in (args.references or "").split(",") if n.strip()]
    if names:
        from .spec.io import load_spec

        for n in names:
            try:
                load_spec(n.strip())
            except SpecError as exc:
                raise UsageError(f"--references: {exc}") from None
        _measure_references(run_dir, space, [n.strip() for n in names], args.storage, quiet=args.format == "json")
    files = make_report(run_dir, space)
    from .report.run import fidelity

    refs = reference_rows(run_dir, space)
    if args.format == "json":
        print(json.dumps({"run_dir": str(run_dir), "files": [str(f) for f in files], "fidelity": fidelity(run_dir),
                          "references": refs}, indent=2))
    else:
        print("\n".join(str(f) for f in files))
        _print_fidelity(run_dir)
        for r in refs:
            print(f"reference {r['reference']}: {r['standing']}")
    return 0


def _print_fidelity(run_dir: Path) -> None:
    from .report.diagnostics import describe
    from .report.run import fidelity

    check = fidelity(run_dir)
    if check is not None:
        print(describe(check))


def cmd_export(args: argparse.Namespace) -> int:
    from .export import example_input, load_network, to_onnx, to_torchscript

    if not (args.onnx or args.torchscript or args.code):
        raise UsageError("export: give --onnx FILE, --torchscript FILE and/or --code FILE.py")
    if args.code and (not args.code.endswith(".py") or not Path(args.code).stem.isidentifier()):
        raise UsageError(f"--code: {args.code!r} must be a Python file name usable as a module (e.g. my_net.py)")
    if args.resolution < 8:
        raise UsageError("--resolution: must be at least 8")
    model = load_network(args.source, args.weights, args.num_classes)
    x = example_input(model, args.resolution)
    out = []
    if args.onnx:
        out.append({"file": args.onnx, "format": "onnx", "max_abs_diff": to_onnx(model, args.onnx, x)})
    if args.torchscript:
        out.append({"file": args.torchscript, "format": "torchscript", "max_abs_diff": to_torchscript(model, args.torchscript, x)})
    if args.code:
        out.append({"file": args.code, "format": "python", "max_abs_diff": _code_diff(args, model, x)})
    _emit(args, out, lambda rows: "\n".join(f"{r['file']}: {r['format']}, max |logit - eager| {r['max_abs_diff']:.2e} "
                                               f"at {args.resolution} px" for r in rows))
    return 0


def _code_diff(args: argparse.Namespace, model, x) -> float:
    """Write the standalone module and check it: built from the file, with the model's weights, on one input."""
    import importlib.util

    import torch

    from .export import to_code
    from .spec.io import load_spec

    path = to_code(load_spec(args.source), args.code, args.num_classes)
    loaded = importlib.util.spec_from_file_location(f"_archspace_export_{path.stem}", path)
    module = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(module)
    standalone = module.build().eval()
    standalone.load_state_dict(model.state_dict())
    with torch.no_grad():
        return float((standalone(x) - model(x)).abs().max())


def cmd_schema(args: argparse.Namespace) -> int:
    """The JSON Schema of a file kind: point an editor's YAML/JSON language server at it for completion."""
    if args.kind == "spec":
        from .spec.net import NetSpec as model
    elif args.kind == "space":
        from .search.space import Space as model
    else:
        from .search.ablation import Ablation as model
    print(json.dumps(model.model_json_schema(), indent=2))
    return 0


def cmd_best(args: argparse.Namespace) -> int:
    from .report.run import best, run_space

    run_dir = Path(args.run_dir)
    space = run_space(run_dir)
    front = best(run_dir)
    keys = [o.key for o in space.objectives]
    _emit(args, front, lambda rows: _rows(["trial", *keys, "spec_hash"], [[r["number"], *(f"{r[k]:.4g}" for k in keys), r["spec_hash"]] for r in rows]))
    return 0


def cmd_ablate(args: argparse.Namespace) -> int:
    from .search.ablation import load_ablation, run_ablation
    from .search.progress import SearchProgress

    ab = load_ablation(args.file)
    update: dict[str, Any] = {}
    if args.seeds is not None:
        update["seeds"] = args.seeds
    ev = ab.evaluator.model_dump()
    if args.device is not None:
        ev["device"] = args.device
        update["measure"] = {**ab.measure.model_dump(), "device": args.device}
    for item in args.budget or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--budget: {item!r} must look like key=value (e.g. epochs=3)")
        import yaml
        ev["budget"] = {**ev["budget"], key: yaml.safe_load(value)}
    update["evaluator"] = ev
    ab = type(ab).model_validate({**ab.model_dump(), **update})
    run_dir = Path(args.run_dir or Path("runs") / f"ablation_{ab.name}")
    table = run_ablation(ab, run_dir, Path(args.out) if args.out else run_dir, storage=args.storage,
                         progress=SearchProgress(f"ablation {ab.name}", enabled=not args.quiet), source=str(args.file),
                         latency_repeats=args.latency_repeats)
    keys = ["label", "params_M", "paper_params_M", "gmacs_smt_paper", "paper_gflops", "latency_ms", "top1_mean", "top1_std", "paper_top1"]
    _emit(args, table, lambda t: t["title"] + "\n" + _rows(keys, [[("" if r[k] is None else r[k]) for k in keys] for r in t["rows"]])
          + f"\nrank correlation with the paper's top-1: {t['rank_correlation_vs_paper']}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import TrainBudget, evaluate
    from .spec.io import load_spec

    spec = load_spec(args.spec)
    update = {k: v for k, v in (("epochs", args.epochs), ("resolution", args.resolution), ("seed", args.seed),
                                ("train_subset", args.train_subset)) if v is not None}
    budget = TrainBudget.for_device(args.device, **update)
    classes = 100 if args.dataset.startswith("cifar100") else None
    from .evaluate.data import load_dataset

    _, labels, _ = load_dataset(args.dataset, args.dataset_root, "test") if args.dataset.startswith("folder:") else (None, None, None)
    classes = int(labels.max()) + 1 if labels is not None else (classes or 10)
    on_event = None
    bar = None
    if args.evaluator == "train" and not args.quiet:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        bar = Progress(TextColumn(f"train {spec.name or args.spec}"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("{task.fields[info]}"), TimeRemainingColumn(), transient=True)
        task = bar.add_task("train", total=None, info="")
        bar.start()

        def show_step(event):
            if event.kind == "step":
                bar.update(task, total=event.steps * event.epochs, completed=event.epoch * event.steps + event.step,
                           info=f"epoch {event.epoch + 1}/{event.epochs}" + (f" loss {event.loss:.3f}" if event.loss else ""))
            return None

        on_event = show_step
    try:
        result = evaluate(spec.model_copy(update={"num_classes": classes}), args.evaluator, budget=budget, dataset=args.dataset,
                          dataset_root=args.dataset_root, device=args.device, progress=on_event)
    finally:
        if bar is not None:
            bar.stop()
    data = result.model_dump(mode="json")
    if args.evaluator == "train":
        line = lambda d: (f"{spec.name or args.spec}: {d['status']}" + (f" ({d['reason']})" if d.get("reason") else "")
                          + (f", top-1 {100 * d['top1']:.2f}%, top-5 {100 * d['top5']:.2f}%" if d.get("top1") is not None else "")
                          + f", {d['epochs_done']} epochs on {d['train_size']} {d['dataset']} images, {d['wall_time_s']:.1f}s, "
                          f"{d['images_per_s']:.0f} img/s on {d['device']}")
    else:
        line = lambda d: f"{spec.name or args.spec}: {d['proxy']} = {d['score']:.6g} ({d['time_s']:.2f}s, batch {d['batch_size']} at {d['resolution']} px)"
    _emit(args, data, line)
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    from rich.console import Console

    from .measure import LatencySettings, apply_process_settings, measure_latencies, profile_flops
    from .nn.build import build
    from .spec.io import load_spec

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device: {args.device!r} but CUDA is not available on this machine (use --device cpu)")
    specs = {}
    for item in args.specs:
        spec = load_spec(item)
        specs[spec.name or Path(item).stem] = spec
    if args.by_module:
        return _profile_by_module(args, specs)
    runtime = args.runtime if args.runtime != "onnxrt" else f"onnxrt-{'cuda' if args.device.startswith('cuda') else 'cpu'}"
    settings = LatencySettings(device=args.device, batch=args.batch, resolution=args.resolution, dtype=args.dtype,
                               runtime=runtime, threads=args.threads, warmup=args.warmup, repeats=args.repeats,
                               channels_last=args.channels_last)
    apply_process_settings()
    console = Console(stderr=True, quiet=args.quiet)
    out: dict[str, dict] = {}
    with console.status("building and counting") as status:
        models = {}
        for name, spec in specs.items():
            status.update(f"{name}: building")
            model = build(spec).eval()
            status.update(f"{name}: counting FLOPs ({', '.join(args.flops)})")
            rec = profile_flops(model, (1, spec.in_chans, args.resolution, args.resolution), args.flops)
            out[name] = {"params": sum(p.numel() for p in model.parameters()), "flops": rec.macs,
                         "flops_record": rec.model_dump(mode="json")}
            models[name] = model
        if not args.no_latency:
            calibration = None
            if args.calibrate and args.device == "cpu":
                status.update(f"calibrating: timing the reference workload on {args.threads} thread(s)")
                calibration = _profile_calibration(args, settings)
            status.update(f"timing {len(models)} model(s), repeats interleaved: {args.repeats} x batch {args.batch} on {args.device}")
            records = measure_latencies(models, settings, calibration=calibration)
            for name, rec in records.items():
                out[name]["latency"] = rec.model_dump(mode="json")
    if args.format == "json":
        print(json.dumps(out if len(out) > 1 else next(iter(out.values())) | {"name": next(iter(out))}, indent=2))
        return 0
    rows = []
    for name, d in out.items():
        lat = d.get("latency") or {}
        rows.append([name, f"{d['params']:,}", *(f"{d['flops'][c] / 1e9:.4f}" for c in args.flops),
                     *( [f"{lat['median_ms']:.2f}", f"{lat['p90_ms']:.2f}", f"{lat['cv']:.3f}", f"{lat['images_per_s']:.1f}"] if lat else [])])
    calibrated = any((d.get("latency") or {}).get("raw_median_ms") is not None for d in out.values())
    if calibrated:
        for row, d in zip(rows, out.values()):
            row.append(f"{d['latency']['raw_median_ms']:.2f}")
    heads = ["model", "params", *(f"GMACs {c}" for c in args.flops)] + (["median ms", "p90 ms", "cv", "img/s"] if not args.no_latency else [])
    heads += ["raw median ms"] if calibrated else []
    print(_rows(heads, rows))
    if not args.no_latency:
        first = next(iter(out.values()))["latency"]["protocol"]
        print(f"protocol: {first['device_name']}, {first['runtime']}, {first['dtype']}, batch {first['batch']}, "
              f"{first['resolution']} px, {first['threads']} thread(s), warm-up {first['warmup']}, {first['repeats']} repeats "
              f"interleaved, statistic {first['statistic']}; FLOPs as MACs at batch 1")
        cal = first.get("calibration")
        if cal:
            speed = next(iter(out.values()))["latency"]["machine_speed"]
            print(f"calibrated: {cal['reference']} took {cal['reference_ms']:.3f} ms when calibrated; the machine ran at "
                  f"{speed:.2f}x that speed during timing (raw median: uncalibrated wall clock)")
    return 0


def _profile_by_module(args: argparse.Namespace, specs: dict) -> int:
    """Params and MACs per module, from the analytic complexity (exact, equal to the counters)."""
    from .measure.complexity import complexity_by_module

    conventions = [c for c in args.flops if c in CONVENTIONS]
    if not conventions:
        raise UsageError("--by-module: give at least one of --flops " + " ".join(CONVENTIONS) + " (ptflops is counted only)")
    out = {name: complexity_by_module(spec, args.resolution) for name, spec in specs.items()}
    if args.format == "json":
        print(json.dumps(out, indent=2))
        return 0
    for name, rows in out.items():
        total = {k: sum(r[k] for r in rows) for k in ("params", *conventions)}
        table = [[r["module"], r["kind"], r["map"], f"{r['params']:,}",
                  *(f"{r[c] / 1e6:.2f}" for c in conventions), f"{100 * r[conventions[0]] / max(total[conventions[0]], 1):.1f}"]
                 for r in rows]
        table.append(["total", "", "", f"{total['params']:,}", *(f"{total[c] / 1e6:.2f}" for c in conventions), "100.0"])
        print(f"{name} at {args.resolution} px, batch 1")
        print(_rows(["module", "kind", "map", "params", *(f"MMACs {c}" for c in conventions), f"% {conventions[0]}"], table))
    return 0


def _profile_calibration(args: argparse.Namespace, settings):
    """The calibration for ``profile``: read from ``--calibration FILE`` when it exists (and fits), else measured (and saved there)."""
    from .files import atomic_write_text
    from .measure import Calibration, load_or_calibrate

    path = Path(args.calibration) if args.calibration else None
    if path is not None and path.exists():
        try:
            cal = Calibration.model_validate_json(path.read_text())
        except ValueError:
            raise UsageError(f"--calibration: {path} is not a calibration file (delete it to measure a new one)") from None
        if not cal.fits(settings.threads, settings.clock):
            raise UsageError(f"--calibration: {path} was measured with {cal.threads} thread(s) on the {cal.clock} clock, "
                             f"this profile uses --threads {settings.threads} on the {settings.clock} clock; use another file")
        return load_or_calibrate(settings, cal)
    cal = load_or_calibrate(settings)
    if path is not None:
        atomic_write_text(path, cal.model_dump_json(indent=1) + "\n")
    return cal


def make_parser() -> argparse.ArgumentParser:
    """The archspace argument parser."""
    from . import __version__

    p = _Parser(prog="archspace", description="Design-space exploration for hybrid SMT/EfficientMod vision networks.")
    p.add_argument("--version", action="version", version=f"archspace {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    s = sub.add_parser("validate", help="check a spec or a search-space file; one line for the first problem")
    s.add_argument("file")
    s.add_argument("--format", choices=["table", "json"], default="table")
    s.set_defaults(func=cmd_validate)

    s = sub.add_parser("build", help="build a spec or preset and summarise it")
    s.add_argument("spec", help="spec file or preset name")
    s.add_argument("--format", choices=["table", "json", "yaml"], default="table")
    s.set_defaults(func=cmd_build)

    s = sub.add_parser("presets", help="list the shipped preset specs")
    s.add_argument("--format", choices=["table", "json"], default="table")
    s.set_defaults(func=cmd_presets)

    s = sub.add_parser("convert", help="map an official SMT/EfficientMod checkpoint onto archspace names")
    s.add_argument("checkpoint")
    s.add_argument("--spec", required=True, help="spec file or preset name of the checkpoint's network")
    s.add_argument("--out", required=True)
    s.add_argument("--format", choices=["table", "json"], default="table")
    s.set_defaults(func=cmd_convert)

    s = sub.add_parser("profile", help="params, FLOPs in named conventions, latency records; several models side by side")
    s.add_argument("specs", nargs="+", help="spec files or preset names")
    s.add_argument("--flops", nargs="+", default=list(CONVENTIONS), choices=COUNTED_CONVENTIONS)
    s.add_argument("--device", default="cpu")
    s.add_argument("--runtime", default="eager", choices=["eager", "compile", "onnxrt"])
    s.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16"])
    s.add_argument("--batch", type=int, default=1)
    s.add_argument("--resolution", type=int, default=224)
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--warmup", type=int, default=5)
    s.add_argument("--repeats", type=int, default=30)
    s.add_argument("--channels-last", action="store_true")
    s.add_argument("--no-latency", action="store_true", help="count only")
    s.add_argument("--by-module", action="store_true",
                   help="a table of params and MACs per module (stem, downsamples, every block, head) instead")
    s.add_argument("--calibrate", action=argparse.BooleanOptionalAction, default=True,
                   help="CPU: rescale latencies by an interleaved reference workload (default on)")
    s.add_argument("--calibration", metavar="FILE",
                   help="CPU: reuse the calibration in FILE so separate runs share one unit; measured and saved there if missing")
    s.add_argument("--format", choices=["table", "json"], default="table")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_profile)

    s = sub.add_parser("evaluate", help="accuracy of a spec: proxy training or a zero-cost proxy on real data")
    s.add_argument("spec", help="spec file or preset name")
    s.add_argument("--evaluator", default="train", choices=EVALUATORS)
    s.add_argument("--dataset", default="fashion-mnist", help="fashion-mnist, cifar10 or folder:PATH")
    s.add_argument("--dataset-root", help="where the dataset lies (default: the Debian location for Fashion-MNIST)")
    s.add_argument("--epochs", type=int)
    s.add_argument("--resolution", type=int)
    s.add_argument("--train-subset", type=int)
    s.add_argument("--seed", type=int)
    s.add_argument("--device", default="cpu")
    s.add_argument("--format", choices=["table", "json"], default="table")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("search", help="search a space for the Pareto front (resumes an interrupted run)")
    s.add_argument("space", help="space file, e.g. spaces/smt.yaml")
    s.add_argument("--run-dir", help="results folder (default runs/<space name>)")
    s.add_argument("--storage", help="Optuna storage shared by workers: sqlite:///, postgresql://... or journal:///path "
                                     "(default: SQLite in the run folder)")
    s.add_argument("--backend", choices=["optuna", "ray"], default="optuna")
    s.add_argument("--cpus-per-trial", type=float, default=1.0, help="Ray: CPUs reserved per trial")
    s.add_argument("--gpus-per-trial", type=float, default=0.0, help="Ray: GPUs reserved per trial")
    s.add_argument("--address", help="Ray cluster address to join (default: a local Ray instance)")
    s.add_argument("--trials", type=int, help="finished trials to reach (overrides the space's budget)")
    s.add_argument("--timeout", type=float, help="stop after this many seconds")
    s.add_argument("--sampler", choices=["nsga2", "tpe", "random", "gp", "grid"])
    s.add_argument("--seed", type=int)
    s.add_argument("--workers", type=int, default=1, help="local worker processes sharing the storage (default 1)")
    s.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)
    s.add_argument("--quiet", action="store_true", help="no progress display")
    s.add_argument("--progress", action="store_true", help="draw the progress bar even when stderr is not a terminal")
    s.add_argument("--log", nargs="+", metavar=("tensorboard", "DIR"),
                   help="track every trial's loss curve and objectives: --log tensorboard [DIR] (default RUN_DIR/tensorboard)")
    s.add_argument("--format", choices=["table", "json"], default="table")
    s.set_defaults(func=cmd_search)

    s = sub.add_parser("ablate", help="run a paper ablation table (brute force over rows x seeds, resumable)")
    s.add_argument("file", help="ablation file, e.g. experiments/ablations/heads.yaml")
    s.add_argument("--device", help="cpu or cuda for training and latency")
    s.add_argument("--seeds", type=int)
    s.add_argument("--budget", action="append", metavar="KEY=VALUE", help="training budget override, repeatable")
    s.add_argument("--run-dir", help="study folder (default runs/ablation_<name>)")
    s.add_argument("--storage")
    s.add_argument("--out", help="where the table CSV/JSON go (default: the study folder)")
    s.add_argument("--latency-repeats", type=int, help="repeats of the final interleaved latency measurement of all rows")
    s.add_argument("--format", choices=["table", "json"], default="table")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_ablate)

    s = sub.add_parser("report", help="rebuild a run's tables and plots")
    s.add_argument("run_dir")
    s.add_argument("--storage", help="the storage the run used, when not the run folder's study.db (only read)")
    s.add_argument("--references", metavar="A,B", help="presets or spec files to train and time under the run's "
                   "protocol and draw beside its trials (kept in RUN_DIR/references.csv; the space's own "
                   "'references' are measured by the search)")
    s.add_argument("--format", choices=["table", "json"], default="table")
    s.set_defaults(func=cmd_report)

    s = sub.add_parser("export", help="write a spec, preset or Pareto YAML as ONNX and/or TorchScript (checked against eager)")
    s.add_argument("source", help="spec file, preset name or runs/<space>/pareto/*.yaml")
    s.add_argument("--weights", help="state dict to carry along (from training or 'archspace convert')")
    s.add_argument("--onnx", metavar="FILE")
    s.add_argument("--torchscript", metavar="FILE")
    s.add_argument("--code", metavar="FILE.py", help="a standalone module that imports only torch (same state_dict keys)")
    s.add_argument("--resolution", type=int, default=224, help="input size the files are traced at")
    s.add_argument("--num-classes", type=int, help="classifier size (default: the spec's)")
    s.add_argument("--format", choices=["table", "json"], default="table")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("schema", help="print the JSON Schema of spec, space or ablation files (for editor completion)")
    s.add_argument("kind", choices=["spec", "space", "ablation"])
    s.set_defaults(func=cmd_schema)

    s = sub.add_parser("best", help="print a run's Pareto front")
    s.add_argument("run_dir")
    s.add_argument("--format", choices=["table", "json"], default="table")
    s.set_defaults(func=cmd_best)

    for register in _EXTRA:
        register(sub)
    return p


_EXTRA: list[Callable[[Any], None]] = []


def _user_error(exc: BaseException) -> bool:
    """Bad input: archspace's own refusals (SpecError, UsageError, a ValueError that archspace raised about an
    argument) and pydantic's validation of user data. A ValueError from inside torch, numpy & co. is a bug."""
    if isinstance(exc, (SpecError, UsageError)):
        return True
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        return True
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and Path(tb.tb_frame.f_code.co_filename).resolve().is_relative_to(Path(__file__).resolve().parent)


def process_settings() -> dict[str, Optional[str]]:
    """The process settings archspace's commands run under, applied before torch loads (recorded in latency protocols).

    Idle OpenMP threads sleep instead of spinning (``OMP_WAIT_POLICY=PASSIVE``, unless the caller set
    it): on a shared machine with few cores, spinning threads steal the time the working threads need.
    Library calls leave the process as the caller set it up.
    """
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return {"omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``archspace`` console script."""
    process_settings()
    try:
        args = make_parser().parse_args(argv)
        args.argv = list(sys.argv[1:] if argv is None else argv)
        return args.func(args)
    except (SpecError, UsageError, ValueError) as exc:
        if os.environ.get("ARCHSPACE_DEBUG") or not _user_error(exc):
            raise  # an internal error: exit 1 with the traceback
        print(f"archspace: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into head & co.
        return 0
    except KeyboardInterrupt:
        print("archspace: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
