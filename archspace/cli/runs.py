"""Commands on search runs: search, report, best, ablate."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._out import UsageError, add_format, emit, rows, say


def cmd_search(args: argparse.Namespace) -> int:
    from ..jobs import configure, run_search
    from ..search.progress import SearchProgress

    if args.log and (args.log[0] != "tensorboard" or len(args.log) > 2):
        raise UsageError("--log: use --log tensorboard [DIR]")
    space = configure(args.space)
    run_dir = Path(args.run_dir) if args.run_dir else None
    log_dir = None
    if args.log:
        log_dir = Path(args.log[1]) if len(args.log) > 1 else (run_dir or Path("runs") / space.name) / "tensorboard"
    progress = SearchProgress(f"search {space.name}", enabled=not args.quiet, force=args.progress)
    run = run_search(space, run_dir=run_dir, storage=args.storage, backend=args.backend, workers=args.workers,
                     trials=args.trials, timeout_s=args.timeout, sampler=args.sampler, seed=args.seed, progress=progress,
                     log_dir=log_dir, address=args.address, cpus_per_trial=args.cpus_per_trial,
                     gpus_per_trial=args.gpus_per_trial, say=None if args.quiet else say)
    if args.format == "json":
        emit(args, run.to_json(), str)
    else:
        s = run.summary
        print(f"{run.space.name}: {s.get('complete', 0)} complete of {s.get('trials', 0)} trials, Pareto front "
              f"{s.get('front', 0)}; results in {run.run_dir}/ (trials.csv, pareto.csv, pareto/*.yaml"
              + "".join(f", {n}" for n in sorted({f.name for f in run.files})) + ")")
        if run.front:
            print(_front_table(run.space, run.front))
        _print_notes(run)
    ended = int(run.summary.get("trials") or 0)
    if ended and not run.completed:
        reasons = run.summary.get("reasons") or {}
        common = max(reasons, key=reasons.get) if reasons else "unknown"
        print(f"archspace: error: no trial completed ({ended} ended; most common reason: {common})", file=sys.stderr)
        return 3
    return 0


def _front_table(space, front: list[dict]) -> str:
    keys = [o.key for o in space.objectives]
    extra = [k for k in ("mparams",) if k not in keys]
    body = [[r["number"], *(_num(r.get(k)) for k in keys + extra), r.get("arch") or "", r.get("spec_hash") or ""]
            for r in front]
    return "Pareto front:\n" + rows(["trial", *keys, *extra, "arch", "spec_hash"], body)


def _num(v) -> str:
    return "" if v is None else f"{v:.4g}"


def _print_notes(run) -> None:
    from ..report.diagnostics import describe

    if run.fidelity is not None:
        print(describe(run.fidelity))
    for r in run.references:
        print(f"reference {r['reference']}: {r['standing']}")


def cmd_report(args: argparse.Namespace) -> int:
    from ..jobs import report_run

    run = report_run(args.run_dir, storage=args.storage, references=(args.references or "").split(","),
                     say=None if args.format == "json" else say)
    if args.format == "json":
        emit(args, run.to_json(), str)
        return 0
    print("\n".join(str(f) for f in run.files))
    _print_notes(run)
    return 0


def cmd_best(args: argparse.Namespace) -> int:
    from ..jobs import front
    from ..search.rundir import run_space

    space = run_space(Path(args.run_dir))
    emit(args, front(args.run_dir), lambda rs: _front_table(space, rs))
    return 0


def cmd_ablate(args: argparse.Namespace) -> int:
    import yaml

    from ..jobs import ablate
    from ..report.tables import ablation_text
    from ..search.progress import SearchProgress

    budget = {}
    for item in args.budget or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--budget: {item!r} must look like key=value (e.g. epochs=3)")
        budget[key] = yaml.safe_load(value)
    table = ablate(args.file, device=args.device, seeds=args.seeds, budget=budget, run_dir=args.run_dir,
                   storage=args.storage, out=args.out, latency_repeats=args.latency_repeats,
                   progress=SearchProgress(f"ablation {Path(args.file).stem}", enabled=not args.quiet))
    emit(args, table, ablation_text)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("search", help="search a space for the Pareto front (re-run the same command to resume)")
    s.add_argument("space", help="space file, e.g. spaces/smt.yaml")
    s.add_argument("--run-dir", help="results folder (default: runs/<space name>)")
    s.add_argument("--storage", help="Optuna storage shared by workers: sqlite:///FILE, postgresql://... or journal:///FILE "
                                     "(default: SQLite in the run folder)")
    s.add_argument("--backend", choices=["optuna", "ray"], default="optuna", help="search engine")
    s.add_argument("--workers", type=int, default=1, help="local worker processes sharing the storage (Optuna backend)")
    s.add_argument("--cpus-per-trial", type=float, default=1.0, help="Ray: CPUs reserved per trial")
    s.add_argument("--gpus-per-trial", type=float, default=0.0, help="Ray: GPUs reserved per trial")
    s.add_argument("--address", help="Ray cluster address to join (default: a local Ray instance)")
    s.add_argument("--trials", type=int, help="finished trials to reach (default: the space's budget.trials)")
    s.add_argument("--timeout", type=float, help="stop after this many seconds (default: the space's budget.timeout_s)")
    s.add_argument("--sampler", choices=["nsga2", "tpe", "random", "gp", "grid"], help="default: the space's sampler.kind")
    s.add_argument("--seed", type=int, help="sampler seed (default: the space's seed)")
    s.add_argument("--quiet", action="store_true", help="no progress display")
    s.add_argument("--progress", action="store_true", help="draw the progress bar even when stderr is not a terminal")
    s.add_argument("--log", nargs="+", metavar=("tensorboard", "DIR"),
                   help="track every trial's loss curve and objectives: --log tensorboard [DIR] (default RUN_DIR/tensorboard)")
    add_format(s)
    s.set_defaults(func=cmd_search)

    s = sub.add_parser("report", help="rebuild a run's tables and plots")
    s.add_argument("run_dir", help="a run folder (runs/<space>)")
    s.add_argument("--storage", help="the storage the run used, when not the run folder's study.db (only read)")
    s.add_argument("--references", metavar="A,B", help="presets or spec files to train and time under the run's "
                   "protocol and draw beside its trials (kept in RUN_DIR/references.csv)")
    add_format(s)
    s.set_defaults(func=cmd_report)

    s = sub.add_parser("best", help="print a run's Pareto front")
    s.add_argument("run_dir", help="a run folder (runs/<space>)")
    add_format(s)
    s.set_defaults(func=cmd_best)

    s = sub.add_parser("ablate", help="run a paper ablation table (every row x seed, resumable)")
    s.add_argument("file", help="ablation file, e.g. experiments/ablations/heads.yaml")
    s.add_argument("--device", help="cpu or cuda for training and latency (default: the file's)")
    s.add_argument("--seeds", type=int, help="seeds per row (default: the file's)")
    s.add_argument("--budget", action="append", metavar="KEY=VALUE", help="training budget override, repeatable")
    s.add_argument("--run-dir", help="study folder (default: runs/ablation_<name>)")
    s.add_argument("--storage", help="Optuna storage (default: SQLite in the study folder)")
    s.add_argument("--out", help="where the table CSV/JSON go (default: the study folder)")
    s.add_argument("--latency-repeats", type=int, help="repeats of the final interleaved latency measurement of all rows")
    add_format(s)
    s.add_argument("--quiet", action="store_true", help="no progress display")
    s.set_defaults(func=cmd_ablate)
