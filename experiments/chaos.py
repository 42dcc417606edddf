"""Chaos test of the search layer: several workers on one storage, random SIGKILLs and restarts.

Starts ``--workers`` worker processes (each runs ``archspace.search.engine.run_worker`` on
``--storage URL``), SIGKILLs one every few seconds (``--kills`` times), restarts it, and when all have
finished checks the study. The first ``--window-kills`` of the kills are timed inside the
record-then-tell window: the harness arms a kill, and the next worker to record a complete result
SIGKILLs itself before Optuna is told. Checks:

- exactly ``budget`` trials ended (COMPLETE, PRUNED, or FAIL with a verdict and reason of its own),
  none RUNNING or WAITING;
- no FAIL trial carries a ``complete`` verdict, in the storage or in the rows of trials.csv;
- every killed trial carries its verdict (``killed``, or ``failed`` when out of retries) and its
  reason in the storage;
- no trial that had ended before a kill was lost or changed (values and verdict compared);
- no architecture was trained to completion twice, except as the retry of a killed trial or a
  cache hit (``cached_from``).

    .venv/bin/python experiments/chaos.py --storage journal --kills 20       # journal file
    .venv/bin/python experiments/chaos.py --storage postgres --kills 20      # a PostgreSQL server started here
    .venv/bin/python experiments/chaos.py --storage postgres --default-heartbeat --kills 6 --window-kills 3 \
        --budget 12 --interval 5 10                                          # Optuna-default heartbeat 10 s, grace 60 s

Writes results/chaos_<storage>.json (chaos_default_<storage>.json with ``--default-heartbeat``, a ``_latency``
suffix with ``--latency``). The
test suite runs short versions (tests/test_workers.py).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import yaml

RESULTS = Path(__file__).resolve().parent / "results"

SPACE = {
    "name": "chaos", "base": "smt_m_6p5m",
    "params": [
        {"name": "heads", "path": "stages[0:3].sam.heads", "choices": [1, 2, 4]},
        {"name": "s3_msa", "path": "stages[2].stack.counts.msa", "low": 0, "high": 2},
        {"name": "agg", "path": "stages[*].sam.aggregation", "choices": ["saa", "none"]},
        {"name": "width3", "path": "stages[2].width", "choices": [128, 256]},
    ],
    "objectives": [{"metric": "accuracy", "direction": "maximize"}, {"metric": "flops", "direction": "minimize"}],
    "evaluator": {"kind": "train", "budget": {"epochs": 1, "train_subset": 60, "test_subset": 50, "resolution": 16,
                                              "batch_size": 30, "threads": 1}},
    "measure": {"latency": False, "resolution": 64},
    "sampler": {"kind": "random"}, "budget": {"trials": 30},
    "workers": {"heartbeat_s": 1, "grace_s": 4, "max_retries": 2},
}


FAST = {"heartbeat_s": 1, "grace_s": 4, "max_retries": 2}  # SPACE's own: a killed trial is retried within seconds
DEFAULT = {"heartbeat_s": 10, "grace_s": 60, "max_retries": 2}  # archspace's defaults (Workers())
TIMED = {"latency": "measured", "resolution": 32, "warmup": 1, "repeats": 3}  # --latency


def _load(storage: str):
    from archspace.search.engine import open_study
    from archspace.search.space import Space

    return open_study(Space.model_validate(SPACE), Path("."), storage, create=False)


def worker(space_file: Path, storage: str, run_dir: Path, window_token: Optional[Path] = None) -> int:
    """One search worker; with ``window_token``, the first to record a complete result after the token appears removes
    it and SIGKILLs itself before Optuna is told (inside the record-then-tell window)."""
    from archspace.search import engine
    from archspace.search.space import load_space

    if window_token is not None:
        record = engine._Objective._record

        def record_then_die(self, trial, out, **extra):
            record(self, trial, out, **extra)
            if out.verdict == "complete":
                with contextlib.suppress(FileNotFoundError):
                    window_token.unlink()  # exactly one worker takes each armed kill
                    os.kill(os.getpid(), signal.SIGKILL)

        engine._Objective._record = record_then_die
    run_dir.mkdir(parents=True, exist_ok=True)
    engine.run_worker(load_space(str(space_file)), run_dir, storage=storage)
    return 0


def worker_command(space_file: Path, storage: str, run_dir: Path, window_token: Optional[Path] = None) -> list[str]:
    """The command line of :func:`worker`."""
    token = ["--window-token", str(window_token)] if window_token is not None else []
    return [sys.executable, str(Path(__file__).resolve()), "--worker", str(space_file), storage, str(run_dir), *token]


def snapshot(storage: str) -> dict[int, tuple]:
    """Ended trials: number -> (state, values, verdict)."""
    from archspace.search.engine import finished

    try:
        study = _load(storage)
    except Exception:  # noqa: BLE001 - the study may not exist yet
        return {}
    return {t.number: (t.state.name, t.values, t.user_attrs.get("verdict")) for t in study.get_trials(deepcopy=False)
            if finished(t)}


def run_chaos(storage: str, work: Path, *, workers: int = 3, kills: int = 20, budget: int = 30, seed: int = 0,
              interval: tuple[float, float] = (1.0, 4.0), timeout_s: float = 900.0, settings: Optional[dict] = None,
              window_kills: int = 0, measure: Optional[dict] = None) -> dict:
    """Run the chaos loop (bounded in kills and time) and return the checks' results; ``settings`` are the space's
    ``workers`` (heartbeat, grace, retries; SPACE's fast ones by default), the first ``window_kills`` of the ``kills``
    are timed inside the record-then-tell window (armed one after another from the start, so a fast search cannot end
    before them), the others hit a random worker whatever it is doing, ``interval`` seconds apart. ``measure``
    replaces the space's (``--latency``: every trial's latency timed, workers taking turns with the cores)."""
    rng = random.Random(seed)
    space_file = work / "chaos.yaml"
    settings = settings or FAST
    space_file.write_text(yaml.safe_dump({**SPACE, "budget": {"trials": budget}, "workers": settings,
                                          **({"measure": measure} if measure else {})}))
    token = work / "die-in-window"

    def start(i: int) -> subprocess.Popen:
        run_dir = work / ("run" if measure else f"run{i}")  # timing workers share one run directory, so take turns
        return subprocess.Popen(worker_command(space_file, storage, run_dir, token), cwd=work,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    procs = {i: start(i) for i in range(workers)}
    t0 = time.monotonic()
    done_kills, in_window, lost, changed, seen = 0, 0, 0, 0, {}
    while time.monotonic() - t0 < timeout_s:
        if in_window >= window_kills:  # window kills are armed at once (their moment is the next recorded result)
            time.sleep(rng.uniform(*interval))
        else:
            time.sleep(0.2)
        alive = [i for i, p in procs.items() if p.poll() is None]
        if not alive:
            break
        if done_kills < kills:
            before = snapshot(storage)
            if in_window < window_kills:
                token.touch()  # armed: the next worker to record a complete result dies before telling Optuna
                dead: list[int] = []  # the taker removes the token, then kills itself: wait for its death
                while not dead and time.monotonic() - t0 < timeout_s and any(p.poll() is None for p in procs.values()):
                    time.sleep(0.05)
                    dead = [i for i, p in procs.items() if p.poll() == -signal.SIGKILL]
                token.unlink(missing_ok=True)
                if not dead:
                    continue  # nothing was left to record (the search ended): no kill
                victim = dead[0]
                procs[victim].wait()
                in_window += 1
            else:
                victim = rng.choice(alive)
                os.kill(procs[victim].pid, signal.SIGKILL)
                procs[victim].wait()
            done_kills += 1
            after = snapshot(storage)
            for number, record in before.items():
                if number not in after:
                    lost += 1
                elif after[number] != record:
                    changed += 1
            seen.update(after)
            procs[victim] = start(victim)
    for p in procs.values():
        try:
            p.wait(timeout=max(1.0, timeout_s - (time.monotonic() - t0)))
        except subprocess.TimeoutExpired:
            p.kill()
    exit_codes = [p.returncode for p in procs.values()]
    errors = [p.stderr.read().decode(errors="replace").strip().splitlines()[-1:] for p in procs.values() if p.returncode]
    return {**check(storage, budget, seen), "kills": done_kills, "window_kills": in_window, "exit_codes": exit_codes,
            "errors": errors, "lost": lost, "changed": changed, "seconds": round(time.monotonic() - t0, 1),
            "workers": workers, "budget": budget, "heartbeat_s": settings["heartbeat_s"], "grace_s": settings["grace_s"]}


def check(storage: str, budget: int, seen: dict[int, tuple]) -> dict:
    """The invariants: ended == budget, none running or waiting, no FAIL trial with a complete verdict, every killed
    trial's verdict and reason in the storage, earlier ended trials unchanged, no duplicate training."""
    from archspace.search.engine import KILLED, OWN_FAIL_VERDICTS, SURPLUS, finished, rows_and_specs

    study = _load(storage)
    trials = study.get_trials(deepcopy=False)
    ended = [t for t in trials if finished(t)]
    running = [t for t in trials if t.state.name == "RUNNING"]
    waiting = [t for t in trials if t.state.name == "WAITING"]
    failed = [t for t in trials if t.state.name == "FAIL" and t.user_attrs.get("verdict") != SURPLUS]
    killed = [t for t in failed if t.user_attrs.get("verdict") == KILLED
              or str(t.user_attrs.get("reason", "")).startswith("worker died")]
    unexplained = [t.number for t in failed if t.user_attrs.get("verdict") not in (*OWN_FAIL_VERDICTS, KILLED)
                   or not t.user_attrs.get("reason")]
    fail_complete = [t.number for t in trials if t.state.name == "FAIL" and t.user_attrs.get("verdict") == "complete"]
    rows, _ = rows_and_specs(study)
    rows_fail_complete = [r["number"] for r in rows if r["state"] == "FAIL" and r["verdict"] == "complete"]
    trained: dict[str, list[int]] = {}
    for t in trials:
        if t.state.name == "COMPLETE" and "cached_from" not in t.user_attrs and t.user_attrs.get("cache_key"):
            trained.setdefault(t.user_attrs["cache_key"], []).append(t.number)
    duplicates = sum(len(v) - 1 for v in trained.values())
    final = {t.number: (t.state.name, t.values, t.user_attrs.get("verdict")) for t in ended}
    changed_at_end = sum(1 for n, rec in seen.items() if final.get(n) != rec)
    return {"ended": len(ended), "complete": sum(t.state.name == "COMPLETE" for t in trials), "running": len(running),
            "waiting": len(waiting), "trials_in_storage": len(trials),
            "retries": sum("retry_of" in t.user_attrs for t in trials),
            "surplus": sum(t.user_attrs.get("verdict") == SURPLUS for t in trials),
            "cache_hits": sum("cached_from" in t.user_attrs for t in trials),
            "killed_trials": len(killed), "killed_reasons": sorted({str(t.user_attrs.get("reason")) for t in killed}),
            "fail_with_complete_verdict": len(fail_complete) + len(rows_fail_complete),
            "failed_without_reason": len(unexplained), "duplicates": duplicates, "changed_at_end": changed_at_end,
            "ok": len(ended) == budget and not running and not waiting and not fail_complete and not rows_fail_complete
            and not unexplained and duplicates == 0 and changed_at_end == 0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", choices=["journal", "postgres", "sqlite"], default="journal")
    parser.add_argument("--url", help="an existing storage URL instead of a fresh one")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--budget", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--interval", type=float, nargs=2, default=(1.0, 4.0), metavar=("MIN", "MAX"),
                        help="seconds between kills, drawn uniformly")
    parser.add_argument("--window-kills", type=int, default=0,
                        help="how many of the kills fall inside the record-then-tell window")
    parser.add_argument("--latency", action="store_true",
                        help="time every trial's latency (workers of one run directory take turns with the cores)")
    parser.add_argument("--default-heartbeat", action="store_true",
                        help="archspace's default heartbeat (10 s) and grace (60 s) instead of 1 s and 4 s")
    parser.add_argument("--worker", nargs=3, metavar=("SPACE", "URL", "RUN_DIR"), help=argparse.SUPPRESS)
    parser.add_argument("--window-token", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        space_file, url, run_dir = args.worker
        return worker(Path(space_file), url, Path(run_dir), args.window_token)
    work = Path(tempfile.mkdtemp(prefix="archspace-chaos-"))
    server = None
    if args.url:
        url = args.url
    elif args.storage == "journal":
        url = f"journal://{work / 'study.log'}"
    elif args.storage == "sqlite":
        url = f"sqlite:///{work / 'study.db'}"
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from conftest import postgres_url

        server = postgres_url.__wrapped__()
        url = next(server)
    try:
        result = run_chaos(url, work, workers=args.workers, kills=args.kills, budget=args.budget, seed=args.seed,
                           interval=tuple(args.interval), settings=DEFAULT if args.default_heartbeat else FAST,
                           window_kills=args.window_kills, timeout_s=1800.0, measure=TIMED if args.latency else None)
    finally:
        if server is not None:
            server.close()
    result["storage"] = args.storage
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"chaos_{'default_' if args.default_heartbeat else ''}{args.storage}{'_latency' if args.latency else ''}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
