"""Commands on search runs: search, report, best, ablate, analyze."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._out import UsageError, add_format, emit, rows, say


def key_values(option: str, items, form: str) -> dict:
    """``KEY=VALUE`` options as a dict, each value read as YAML (``3``, ``true``, ``[1, 2]``, ``synflow``)."""
    import yaml

    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{option}: {item!r} must look like {form}")
        out[key] = yaml.safe_load(value)
    return out


def cmd_search(args: argparse.Namespace) -> int:
    from ..jobs import configure, run_search
    from ..search.progress import SearchProgress

    if args.log and (args.log[0] != "tensorboard" or len(args.log) > 2):
        raise UsageError("--log: use --log tensorboard [DIR]")
    by = [b for b in (args.by or "").split(",") if b]
    space = configure(args.space, trials=args.trials, sampler=args.sampler, by=by, per_value=args.per_value,
                      overrides=key_values("--set", args.set, "field.path=value (e.g. evaluator.kind=synflow)"))
    run_dir = Path(args.run_dir) if args.run_dir else None
    log_dir = None
    if args.log:
        log_dir = Path(args.log[1]) if len(args.log) > 1 else (run_dir or Path("runs") / space.name) / "tensorboard"
    progress = SearchProgress(f"search {space.name}", enabled=not args.quiet, force=args.progress)
    run = run_search(space, run_dir=run_dir, storage=args.storage, backend=args.backend, workers=args.workers, timeout_s=args.timeout, sampler=args.sampler, seed=args.seed, progress=progress,
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
    from ..jobs import ablate
    from ..report.tables import ablation_text
    from ..search.progress import SearchProgress

    budget = key_values("--budget", args.budget, "key=value (e.g. epochs=3)")
    table = ablate(args.file, device=args.device, seeds=args.seeds, budget=budget, run_dir=args.run_dir,
                   storage=args.storage, out=args.out, latency_repeats=args.latency_repeats,
                   progress=SearchProgress(f"ablation {Path(args.file).stem}", enabled=not args.quiet))
    emit(args, table, ablation_text)
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from ..analysis import analyze

    result = analyze(args.runs, by=args.by, normalize=args.normalize, metric=args.metric, where=args.where or (),
                     storage=args.storage, out=args.out, bins=args.bins, permutations=args.permutations,
                     level=args.level, plots=not args.no_plots)
    emit(args, result, analysis_text)
    return 0


def analysis_text(result: dict) -> str:
    """The analysis as tables: populations, pairs, importance, proxies, notes, files."""
    lower = "lower" if result["lower_is_better"] else "higher"
    norm = "not normalised" if result["normalize"] == "none" else f"normalised by {result['normalize']}"
    out = [f"{result['metric_label']} ({lower} is better), EDFs {norm}"]
    out.append(rows(["population", "n", "planned", "distinct", "mean", "median", "best", "best of 8", "KS at m=32"],
                    [[g["label"], g["n"], g["planned"], g["distinct"], f"{g['mean']:.3f}", f"{g['median']:.3f}", f"{g['best']:.3f}",
                      next((f"{b['expected_best']:.3f}" for b in g["best_of_k"] if b["k"] == 8), ""),
                      next((f"{s['ks_mean']:.3f}" for s in g["sample_size"] if s["m"] == 32), "")]
                     for g in result["groups"]]))
    if result["pairs"]:
        level = f"{result['level']:.0%}"
        out.append("")
        out.append(rows(["a", "b", "KS", "p", "p Holm", f"mean a-b [{level}]", "P(a better)", "EDF above"],
                        [[p["a"], p["b"], f"{p['ks']:.3f}", f"{p['p_value']:.3g}", f"{p['p_holm']:.3g}",
                          f"{p['mean_difference']:+.3f} [{p['diff_lo']:+.3f}, {p['diff_hi']:+.3f}]",
                          f"{p['p_a_better']:.2f}", p["dominant"]] for p in result["pairs"]]))
    for imp in result["importance"]:
        ped = imp.get("ped_anova")
        if ped:
            top = ", ".join(f"{k} {v:.2f}" for k, v in list(ped.items())[:4])
            fan = imp.get("fanova")
            fan = "; fANOVA " + ", ".join(f"{k} {v:.2f}" for k, v in list(fan.items())[:4]) if fan else ""
            out.append(f"importance for {imp['objective']} ({imp['run']}, n={imp['n']}): PED-ANOVA {top}{fan}")
    for c in result["proxies"]:
        out.append(f"proxy {c['proxy']} ({c['proxy_evaluator']}) against {c['against']} ({c['against_evaluator']}): "
                   f"Kendall tau {c['kendall_tau']:.3f}, Spearman {c['spearman']:.3f} over {c['n']} architectures")
    out += [f"note: {n}" for n in result["notes"]]
    if result.get("files"):
        out.append("files: " + ", ".join(result["files"]))
    return "\n".join(out)


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
    s.add_argument("--by", metavar="PARAM[,PARAM]", help="with --sampler random: a population balanced over these "
                   "parameters (each value the same share of the trials; the rest uniform), for archspace analyze")
    s.add_argument("--per-value", type=int, metavar="N", help="with --by: enough trials for N members per value")
    s.add_argument("--set", action="append", metavar="FIELD=VALUE", help="override a field of the space, repeatable "
                   "(e.g. --set evaluator.kind=synflow --set evaluator.budget.train_subset=800)")
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

    s = sub.add_parser("analyze", help="compare populations of runs (or of a parameter's values) by their error "
                       "distributions: EDFs, KS tests, importance, best of k")
    s.add_argument("runs", nargs="+", metavar="RUN", help="run folders (or storage URLs), e.g. runs/smt")
    s.add_argument("--by", metavar="PARAM", help="one population per value of this parameter within each run")
    s.add_argument("--normalize", choices=["params", "flops", "none"], default="params",
                   help="weight members so the populations' complexity distributions match (NDS)")
    s.add_argument("--metric", help="error (100 - top-1; default for training runs), accuracy (a zero-cost proxy's "
                   "score; default for those), latency_ms, gmacs, mparams or images_per_s")
    s.add_argument("--where", action="append", metavar="COND", help="keep trials with PARAM>=VALUE (>=, <=, ==, !=, >, <), "
                   "repeatable, e.g. --where 's3_msa>=1'")
    s.add_argument("--storage", help="the storage the runs used, when not their study.db (read only)")
    s.add_argument("--out", help="folder for analysis.json, groups.csv, pairs.csv and the plots (default RUN/analysis)")
    s.add_argument("--bins", type=int, help="complexity bins for the normalisation (default: from the sample sizes)")
    s.add_argument("--permutations", type=int, default=2000, help="permutations of each KS test")
    s.add_argument("--level", type=float, default=0.9, help="level of the bootstrap bands and intervals")
    s.add_argument("--no-plots", action="store_true", help="tables and JSON only")
    add_format(s)
    s.set_defaults(func=cmd_analyze)

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
