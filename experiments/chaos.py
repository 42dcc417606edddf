"""Chaos test of the search layer: several workers on one storage, random SIGKILLs and restarts.

Starts ``--workers`` processes of ``archspace search SPACE --storage URL``, SIGKILLs a random one
every few seconds (``--kills`` times), restarts it, and when all have finished checks the study:

- exactly ``budget`` trials ended (complete, pruned, or failed with a verdict), none RUNNING;
- no trial that had ended before a kill was lost or changed (values and verdict compared);
- no architecture was trained to completion twice, except as the retry of a killed trial or a
  cache hit (``cached_from``).

    .venv/bin/python experiments/chaos.py --storage journal --kills 20       # journal file
    .venv/bin/python experiments/chaos.py --storage postgres --kills 20      # a PostgreSQL server started here

Writes results/chaos_<storage>.json. The test suite runs a short version (tests/test_workers.py).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def _load(storage: str):
    from archspace.search.engine import open_study
    from archspace.search.space import Space

    return open_study(Space.model_validate(SPACE), Path("."), storage, create=False)


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
              interval: tuple[float, float] = (1.0, 4.0), timeout_s: float = 900.0) -> dict:
    """Run the chaos loop (bounded in kills and time) and return the checks' results."""
    rng = random.Random(seed)
    space_file = work / "chaos.yaml"
    space_file.write_text(yaml.safe_dump({**SPACE, "budget": {"trials": budget}}))
    cmd = [sys.executable, "-m", "archspace.cli", "search", str(space_file), "--storage", storage, "--quiet"]

    def start(i: int) -> subprocess.Popen:
        return subprocess.Popen([*cmd, "--run-dir", str(work / f"run{i}")], cwd=work, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)

    procs = {i: start(i) for i in range(workers)}
    t0 = time.monotonic()
    done_kills, lost, changed, seen = 0, 0, 0, {}
    while time.monotonic() - t0 < timeout_s:
        time.sleep(rng.uniform(*interval))
        alive = [i for i, p in procs.items() if p.poll() is None]
        if not alive:
            break
        if done_kills < kills:
            before = snapshot(storage)
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
    return {**check(storage, budget, seen), "kills": done_kills, "exit_codes": exit_codes, "errors": errors, "lost": lost,
            "changed": changed, "seconds": round(time.monotonic() - t0, 1), "workers": workers, "budget": budget}


def check(storage: str, budget: int, seen: dict[int, tuple]) -> dict:
    """The invariants: ended == budget, none running, earlier ended trials unchanged, no duplicate training."""
    from archspace.search.engine import finished

    study = _load(storage)
    trials = study.get_trials(deepcopy=False)
    ended = [t for t in trials if finished(t)]
    running = [t for t in trials if t.state.name == "RUNNING"]
    trained: dict[str, list[int]] = {}
    for t in trials:
        if t.state.name == "COMPLETE" and "cached_from" not in t.user_attrs and t.user_attrs.get("cache_key"):
            trained.setdefault(t.user_attrs["cache_key"], []).append(t.number)
    duplicates = sum(len(v) - 1 for v in trained.values())
    final = {t.number: (t.state.name, t.values, t.user_attrs.get("verdict")) for t in ended}
    changed_at_end = sum(1 for n, rec in seen.items() if final.get(n) != rec)
    return {"ended": len(ended), "running": len(running), "trials_in_storage": len(trials),
            "retries": sum("retry_of" in t.user_attrs for t in trials),
            "cache_hits": sum("cached_from" in t.user_attrs for t in trials),
            "killed_trials": sum(t.state.name == "FAIL" and "verdict" not in t.user_attrs for t in trials),
            "duplicates": duplicates, "changed_at_end": changed_at_end, "ok": len(ended) == budget and not running
            and duplicates == 0 and changed_at_end == 0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", choices=["journal", "postgres", "sqlite"], default="journal")
    parser.add_argument("--url", help="an existing storage URL instead of a fresh one")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--budget", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
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
        result = run_chaos(url, work, workers=args.workers, kills=args.kills, budget=args.budget, seed=args.seed)
    finally:
        if server is not None:
            server.close()
    result["storage"] = args.storage
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"chaos_{args.storage}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
