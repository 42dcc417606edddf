"""Jobs: a search run and a report, each one library call from its checks to its files.

``run_search`` owns a run's life cycle: apply the run's overrides to the space (so the sampler is
sized for the budget that runs), check everything and write ``space.yaml`` (:func:`prepare_run`),
run the engine (Optuna in this process, or N local worker processes sharing the storage, or Ray
Tune), measure the references under the run's protocol, write the report. The CLI, notebooks,
experiments and tests call it; this module sits above ``search`` and ``report`` and below ``cli``.
"""
from __future__ import annotations

import multiprocessing
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Optional, Sequence, Union

from .search.space import Space, load_space
from .spec.errors import SpecError
from .vocab import VALUE_COLUMNS

Say = Optional[Callable[[str], Any]]


@dataclass
class SearchRun:
    """What a search or report left: its folder, summary, files, references with their standing, front."""

    run_dir: Path
    space: Space
    summary: dict[str, Any]
    files: list[Path] = field(default_factory=list)
    references: list[dict] = field(default_factory=list)
    fidelity: Optional[dict] = None
    front: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def completed(self) -> int:
        return int(self.summary.get("complete") or 0)

    def to_json(self) -> dict[str, Any]:
        return {**self.summary, "run_dir": str(self.run_dir), "files": [str(f) for f in self.files],
                "references": self.references, "fidelity": self.fidelity, "front": self.front, "warnings": self.warnings}


def configure(space: Union[Space, str, Path], *, trials: Optional[int] = None, timeout_s: Optional[float] = None,
              sampler: Optional[str] = None, seed: Optional[int] = None, by: Sequence[str] = (),
              per_value: Optional[int] = None, overrides: Optional[dict[str, Any]] = None) -> Space:
    """The space with a run's overrides applied and validated again (a typed copy; the file is not changed).

    ``by`` balances a random population over those parameters (``sampler.by``); ``per_value`` sizes its
    budget so every value of each gets at least that many members (unless ``trials`` is given); ``overrides``
    sets any field by its dotted path (``{"evaluator.kind": "synflow"}``, ``--set evaluator.kind=synflow``)."""
    if not isinstance(space, Space):
        space = load_space(_expect_kind(space, "space"))
    sets = dict(overrides or {})
    if sampler is not None:
        sets["sampler.kind"] = sampler
    if by:
        sets["sampler.by"] = list(by)
    if sets:
        space = _override(space, sets)
    if per_value is not None:
        if isinstance(per_value, bool) or per_value < 1:
            raise SpecError(f"--per-value: must be at least 1, got {per_value}")
        if not space.sampler.by:
            raise SpecError("--per-value: sizes a balanced population; name its parameters with --by")
        from .search.population import trials_for

        needed = trials_for(space, per_value)
        if trials is not None and trials < needed:
            raise SpecError(f"--trials: {trials} gives fewer than {per_value} members per value; use at least {needed} "
                            f"or leave --trials out")
        trials = needed if trials is None else trials
    if trials is not None and (isinstance(trials, bool) or trials < 1):
        raise SpecError(f"--trials: must be at least 1, got {trials}")
    if timeout_s is not None and timeout_s <= 0:
        raise SpecError(f"--timeout: must be a positive number of seconds, got {timeout_s}")
    data = space.model_dump(mode="json")
    if trials is not None:
        data["budget"]["trials"] = trials
    if timeout_s is not None:
        data["budget"]["timeout_s"] = timeout_s
    if sampler is not None:
        data["sampler"]["kind"] = sampler
    if seed is not None:
        data["seed"] = seed
    return Space.model_validate(data) if data != space.model_dump(mode="json") else space


def _override(space: Space, overrides: dict[str, Any]) -> Space:
    """The space with fields set by dotted path and validated again; SpecError naming the field otherwise."""
    from pydantic import ValidationError

    from .search.space import check_space
    from .spec.errors import first_error

    data = space.model_dump(mode="json")
    for path, value in overrides.items():
        node, keys = data, str(path).split(".")
        for key in keys[:-1]:
            if not isinstance(node.get(key), dict):
                raise SpecError(f"--set: {path}: {key!r} is not a section of the space (sections: "
                                f"{', '.join(k for k, v in data.items() if isinstance(v, dict))})")
            node = node[key]
        if keys[-1] not in node:
            raise SpecError(f"--set: {path}: unknown field (fields there: {', '.join(node)})")
        if path in ("measure.profile",) and isinstance(value, str):
            value = str(Path(value).resolve())
        if path == "measure.report_profiles" and isinstance(value, list):
            value = [str(Path(v).resolve()) for v in value]
        node[keys[-1]] = value
    try:
        out = Space.model_validate(data)
    except ValidationError as exc:
        raise first_error(exc) from None
    check_space(out, "space")
    return out


def run_search(space: Union[Space, str, Path], *, run_dir: Optional[Union[str, Path]] = None,
               storage: Optional[str] = None, backend: str = "optuna", workers: int = 1,
               trials: Optional[int] = None, timeout_s: Optional[float] = None, sampler: Optional[str] = None,
               seed: Optional[int] = None, by: Sequence[str] = (), per_value: Optional[int] = None,
               overrides: Optional[dict[str, Any]] = None, references: Optional[Sequence[str]] = None, progress: Any = None,
               log_dir: Optional[Union[str, Path]] = None, address: Optional[str] = None,
               cpus_per_trial: float = 1.0, gpus_per_trial: float = 0.0, say: Say = None) -> SearchRun:
    """Run (or resume) the search of ``space`` to its budget and report it; returns the :class:`SearchRun`.

    ``workers`` local processes share the storage (Optuna backend); ``references`` (default: the
    space's) are measured under the run's protocol after the search; ``progress`` is a
    :class:`archspace.search.progress.SearchProgress` (or None); ``log_dir`` writes TensorBoard logs;
    ``say`` gets warnings and notes as lines."""
    from .search.rundir import prepare_run

    say = say or (lambda line: None)
    if backend not in ("optuna", "ray"):
        raise SpecError(f"--backend: {backend!r} is not a backend (use optuna or ray)")
    if isinstance(workers, bool) or workers < 1:
        raise SpecError(f"--workers: must be at least 1, got {workers}")
    if workers > 1 and backend == "ray":
        raise SpecError("--workers: the Ray backend takes its concurrency from the cluster (leave --workers out)")
    if workers > 1 and log_dir is not None:
        raise SpecError("--log: TensorBoard logs are written with one local worker or the Ray backend (leave out --workers)")
    space = configure(space, trials=trials, timeout_s=timeout_s, sampler=sampler, seed=seed, by=by, per_value=per_value,
                      overrides=overrides)
    names = list(space.references if references is None else references)
    _check_references(names)
    run_dir = prepare_run(space, Path(run_dir) if run_dir else None, storage=storage, backend=backend)
    if space.sampler.by:
        from .search.population import describe

        say(describe(space))
    log = None
    if log_dir is not None:
        from .search.tracking import TensorBoardLog

        log = TensorBoardLog(Path(log_dir))
    if backend == "ray":
        from .search.ray_engine import run_ray

        summary = run_ray(space, run_dir, address=address, storage=storage, progress=progress,
                          cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial, log=log)
    elif workers == 1:
        from .search.engine import run_worker as work

        summary = work(space, run_dir, storage=storage, progress=progress, log=log)
    else:
        summary = _run_workers(space, run_dir, storage, workers, progress, say)
    if not summary.get("trials"):
        return SearchRun(run_dir, space, summary)
    if names:
        from .report.references import measure_references

        measure_references(run_dir, space, names, stored_calibration(space, run_dir, storage), say=say)
    return _reported(run_dir, space, summary)


def report_run(run_dir: Union[str, Path], *, storage: Optional[str] = None, references: Sequence[str] = (),
               say: Say = None) -> SearchRun:
    """Rewrite a run's tables from its study (``storage``, or the run folder's study.db), measure extra
    ``references`` under its protocol, redraw its plots; nothing is created in the storage."""
    from .search.engine import open_study, rows_and_specs
    from .search.rundir import run_space
    from .search.store import write_results

    run_dir = Path(run_dir)
    space = run_space(run_dir)
    names = [n.strip() for n in references if n.strip()]
    _check_references(names, "--references")
    if storage or (run_dir / "study.db").exists():
        rows, specs = rows_and_specs(open_study(space, run_dir, storage, create=False), space.workers.max_retries)
        summary = write_results(run_dir, space, rows, specs)
    elif (run_dir / "trials.csv").exists():
        summary = _summary_from_table(run_dir, space)
    else:
        raise SpecError(f"{run_dir}: no trials yet (run 'archspace search' first)")
    if names:
        from .report.references import measure_references

        measure_references(run_dir, space, names, stored_calibration(space, run_dir, storage), say=say)
    return _reported(run_dir, space, summary)


def front(run_dir: Union[str, Path]) -> list[dict]:
    """A run's Pareto front over its objectives, as table rows (trial number, arch, values, hash)."""
    from .report.run import best

    return best(Path(run_dir))


def stored_calibration(space: Space, run_dir: Path, storage: Optional[str]) -> Any:
    """The latency calibration a run's trials used (kept by whichever engine ran them), so its references
    are timed in the same unit; None when the run measures no calibrated CPU latency."""
    if not (space.measure.timed and space.measure.calibrate):
        return None
    from .search import ray_engine

    if ray_engine.calibration_file(run_dir).exists():
        return ray_engine.stored_calibration(space, run_dir)
    from .search.engine import open_study, study_calibration

    return study_calibration(open_study(space, run_dir, storage, create=False), space)


def _expect_kind(path: Union[str, Path], kind: str) -> Union[str, Path]:
    """``path`` when it holds a file of ``kind`` ('space', 'ablation'); one line naming the command it is for otherwise."""
    from .search.validate import file_kind

    found = file_kind(path)
    if found == kind:
        return path
    wanted = {"space": "a search space", "ablation": "an ablation"}[kind]
    hint = {"space": f"run 'archspace search {path}'", "ablation": f"run 'archspace ablate {path}'",
            "spec": f"try 'archspace build {path}'"}[found]
    raise SpecError(f"{path}: this is {'an' if found == 'ablation' else 'a'} {found} file, not {wanted}; {hint}")


def _check_references(names: Sequence[str], field: str = "references") -> None:
    from .spec.io import load_spec

    for name in names:
        try:
            load_spec(name)
        except SpecError as exc:
            raise SpecError(f"{field}: {exc}") from None


def _reported(run_dir: Path, space: Space, summary: dict) -> SearchRun:
    from .report.run import best, fidelity, make_report, reference_rows

    files = make_report(run_dir, space)
    return SearchRun(run_dir, space, summary, files, reference_rows(run_dir, space), fidelity(run_dir), best(run_dir))


def _summary_from_table(run_dir: Path, space: Space) -> dict[str, Any]:
    from .report.run import best
    from .search.results import read_table

    rows = read_table(run_dir / "trials.csv")
    return {"space": space.name, "trials": sum(r.get("verdict") not in ("running", "killed") for r in rows),
            "complete": sum(r.get("verdict") == "complete" for r in rows), "front": len(best(run_dir))}


def _worker(space_json: str, run_dir: str, storage: Optional[str], index: int) -> None:
    """One local worker process (started by :func:`_run_workers`): the engine's loop, no display."""
    import sys

    from .search.engine import run_worker as work

    try:
        work(Space.model_validate_json(space_json), Path(run_dir), storage=storage, worker_index=index)
    except SpecError as exc:
        print(f"archspace: worker {index}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


def _run_workers(space: Space, run_dir: Path, storage: Optional[str], workers: int, progress: Any,
                 say: Callable[[str], Any]) -> dict[str, Any]:
    """``workers`` local processes on one storage; this process shows every worker's trials as they end."""
    from .search.engine import budget_target, census, open_study, rows_and_specs
    from .search.store import write_results

    study = open_study(space, run_dir, storage)  # created once, before the workers race to create it
    max_retries = space.workers.max_retries
    target = budget_target(space)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(space.model_dump_json(), str(run_dir), storage, i), daemon=False)
             for i in range(workers)]
    shown: set[int] = set()
    if progress is not None:
        progress.start(target, census(study.get_trials(deepcopy=False), max_retries).ended)
        rows, _ = rows_and_specs(study, max_retries)
        shown = {int(r["number"]) for r in rows if r["verdict"] not in ("running", "killed")}
    for p in procs:
        p.start()
    try:
        while True:
            alive = [p for p in procs if p.is_alive()]
            if progress is not None:
                shown |= _show_ended(study, space, progress, shown)
            if not alive:
                break
            alive[0].join(timeout=1.0)
    except KeyboardInterrupt:
        for p in procs:
            p.terminate()
        raise
    finally:
        if progress is not None:
            progress.stop()
    failed = [p.exitcode for p in procs if p.exitcode]
    if failed:
        say(f"warning: {len(failed)} of {workers} worker(s) exited with an error (exit codes {sorted(set(failed))})")
    rows, specs = rows_and_specs(study, max_retries)
    summary = write_results(run_dir, space, rows, specs)
    summary["workers"] = workers
    return summary


def _show_ended(study: Any, space: Space, progress: Any, shown: set[int]) -> set[int]:
    """Hand every trial that ended since the last look (any worker's) to the progress display."""
    from .search.engine import rows_and_specs
    from .search.front import pareto_front

    rows, _ = rows_and_specs(study, space.workers.max_retries)
    keys = [o.key for o in space.objectives]
    new = set()
    for r in sorted(rows, key=lambda r: int(r["number"])):
        n = int(r["number"])
        if r["verdict"] in ("running", "killed") or n in shown:  # a killed trial is retried: its retry is shown
            continue
        done = [x for x in rows if x["verdict"] == "complete" and (int(x["number"]) in shown or int(x["number"]) in new
                                                                    or x is r)]
        outcome = SimpleNamespace(verdict=r["verdict"], reason=r.get("reason"),
                                  values={k: r[k] for k in VALUE_COLUMNS if isinstance(r.get(k), (int, float))})
        progress.trial_done(n, outcome, {"front": len(pareto_front(done, keys, space.directions))})
        new.add(n)
    return new


def ablate(file: Union[str, Path], *, device: Optional[str] = None, seeds: Optional[int] = None,
           budget: Optional[dict[str, Any]] = None, run_dir: Optional[Union[str, Path]] = None,
           storage: Optional[str] = None, out: Optional[Union[str, Path]] = None,
           latency_repeats: Optional[int] = None, progress: Any = None) -> dict[str, Any]:
    """Run (or resume) an ablation table with a run's overrides (device, seeds, training budget keys); the table
    goes to ``out`` (default: the study folder ``runs/ablation_<name>``, so a re-run never overwrites committed
    results)."""
    from .search.ablation import default_run_dir, load_ablation, run_ablation

    ab = load_ablation(_expect_kind(file, "ablation"))
    data = ab.model_dump(mode="json")
    if seeds is not None:
        data["seeds"] = seeds
    ev = ab.evaluator.on_device(device) if device else ab.evaluator  # the device's budget, keeping the file's changes
    data["evaluator"] = {**ev.model_dump(mode="json"), "budget": {**ev.budget.model_dump(mode="json"), **(budget or {})}}
    if device is not None:
        data["measure"]["device"] = device
    ab = type(ab).model_validate(data)
    run_dir = Path(run_dir) if run_dir else default_run_dir(ab)
    return run_ablation(ab, run_dir, Path(out) if out else run_dir, storage=storage, progress=progress,
                        source=str(file), latency_repeats=latency_repeats)


def results(source: Union[str, Path], *, storage: Optional[str] = None, study: Optional[str] = None):
    """The trials of a run as a pandas DataFrame: one row per trial, a ``param_<name>`` column per searched
    parameter, numeric objective columns (``mparams``, ``gmacs``, ``latency_ms``, ``images_per_s``,
    ``accuracy``) and protocol columns.

    ``source`` is a run directory (its ``trials.csv``, or its study when ``storage`` is given) or a storage
    URL (``study`` names the study when the storage holds several). Nothing is created or changed.
    """
    import pandas as pd

    from .search.results import INTS, STRINGS, columns

    space, rows = run_rows(source, storage=storage, study=study)
    cols = columns(space)
    frame = pd.DataFrame([{k: r.get(k) for k in cols} for r in rows], columns=cols)
    for k in VALUE_COLUMNS + ("seconds",):
        frame[k] = pd.to_numeric(frame[k], errors="coerce").astype("float64")
    for k in cols:
        if k in INTS:
            frame[k] = frame[k].astype("Int64")
        elif k in STRINGS:
            frame[k] = frame[k].astype("string")
    return frame


def run_rows(source: Union[str, Path], *, storage: Optional[str] = None,
             study: Optional[str] = None) -> tuple[Space, list[dict[str, Any]]]:
    """(space, typed table rows) of a run directory (its ``trials.csv``, or its study in ``storage``) or of a study
    in a storage URL, read as they are now: a search still running gives the trials ended so far. Nothing written."""
    from .search.engine import open_study, rows_and_specs
    from .search.results import read_table, table

    src = str(source)
    if "://" in src:
        import optuna

        from .search.storage import open_storage

        names = optuna.get_all_study_names(open_storage(src, create=False))
        name = study or (names[0] if len(names) == 1 else None)
        if name not in names:
            raise SpecError(f"study: give one of {names} (the storage holds {len(names)} studies)")
        attrs = optuna.load_study(study_name=name, storage=open_storage(src, create=False)).user_attrs
        if "space" not in attrs:
            raise SpecError(f"study {name!r} was not written by archspace search (no space attribute)")
        space = Space.model_validate(attrs["space"])
        return space, table(space, *rows_and_specs(open_study(space, Path("."), src, create=False),
                                                   space.workers.max_retries))
    from .search.rundir import run_space

    run_dir = Path(src)
    space = run_space(run_dir, check=False)
    if storage:
        return space, table(space, *rows_and_specs(open_study(space, run_dir, storage, create=False),
                                                   space.workers.max_retries))
    return space, read_table(run_dir / "trials.csv") if (run_dir / "trials.csv").exists() else []


# ----------------------------------------------------------------------------- device profiles

GRID_WIDTH_MULTS = (0.5, 0.75, 1.0, 1.25, 1.5)  # the registry grid: every preset at these widths


def device_specs(spaces: Sequence[Union[str, Path]] = (), *, samples: int = 300, seed: int = 0) -> tuple[list, list[str], int]:
    """The networks a device profile covers, most representative first, with their sources and resolution.

    Per space: its base, then ``samples`` random valid specs (the parts of a space repeat, so a few hundred
    samples reach nearly all of them); spaces are interleaved so the first networks (the correction's) come
    from every space. Without spaces: every preset at the widths of :data:`GRID_WIDTH_MULTS`.
    """
    from .search.space import base_spec, sample_specs
    from .spec.io import load_spec, preset_names

    if not spaces:
        specs = []
        for mult in GRID_WIDTH_MULTS:
            for name in preset_names():
                try:
                    specs.append((f"{name}@w{mult:g}", load_spec(name).with_width_mult(mult)))
                except ValueError:
                    continue
        return specs, ["presets x width " + "/".join(f"{m:g}" for m in GRID_WIDTH_MULTS)], 224
    loaded = [(Path(p), load_space(_expect_kind(p, "space"))) for p in spaces]
    resolutions = {s.measure.resolution for _, s in loaded}
    if len(resolutions) > 1:
        raise SpecError(f"--space: the spaces measure at different resolutions ({sorted(resolutions)}); profile them separately")
    columns = []
    for path, space in loaded:
        drawn = [(f"{space.name}-base", base_spec(space))]
        drawn += [(f"{space.name}-{i}", spec) for i, (_, spec) in enumerate(sample_specs(space, samples, seed))]
        columns.append(drawn)
    specs = [col[i] for i in range(max(map(len, columns))) for col in columns if i < len(col)]
    return specs, [str(p) for p, _ in loaded], resolutions.pop()


def measure_device(out: Union[str, Path], *, spaces: Sequence[Union[str, Path]] = (), device: str = "cpu",
                   runtime: str = "eager", threads: int = 1, minutes: float = 10.0, samples: int = 300,
                   networks: int = 30, warmup: int = 3, repeats: int = 15, name: Optional[str] = None,
                   progress: Optional[Callable[[int, int, str], Any]] = None) -> Any:
    """Measure a device profile on this machine (``archspace device measure``): the latency table of every part the
    spaces (or the presets' width grid) can produce, timed in context, and ``networks`` whole networks for the
    correction; bounded by ``minutes``, resumable, written atomically to ``out``. Returns the DeviceProfile."""
    from pydantic import ValidationError

    from .measure.latency.model import measure_profile
    from .measure.latency.settings import LatencySettings
    from .spec.errors import first_error

    if not 0 < minutes <= 24 * 60:
        raise SpecError(f"--minutes: {minutes:g} must be above 0 and at most 1440")
    if samples < 1 or networks < 0:
        raise SpecError("--samples: at least 1 (and --networks at least 0)")
    out = Path(out)
    if out.exists() and out.is_dir():
        raise SpecError(f"--out: {out} is a folder; give the profile's file name, e.g. {out / 'cpu.json'}")
    if out.parent.exists() and not out.parent.is_dir():
        raise SpecError(f"--out: {out.parent} is a file, not a folder; give a path such as devices/cpu.json")
    if runtime == "onnxrt":
        runtime = f"onnxrt-{'cuda' if device.startswith('cuda') else 'cpu'}"
    specs, sources, resolution = device_specs(spaces, samples=samples)
    try:
        settings = LatencySettings(device=device, runtime=runtime, threads=threads, resolution=resolution,
                                   warmup=warmup, repeats=repeats)
        if device.startswith("cuda"):
            from .measure.latency.runtimes import check_device

            check_device(device)
        out.parent.mkdir(parents=True, exist_ok=True)  # every argument checked: nothing is written for bad input
        return measure_profile(specs, settings, out=out, name=name, networks=networks, minutes=minutes,
                               sources=sources, progress=progress)
    except ValidationError as exc:
        raise SpecError(f"--{first_error(exc)}") from None
    except ValueError as exc:
        raise SpecError(" ".join(str(exc).split())) from None
