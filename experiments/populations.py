"""Population ablations (issue 23): SMT's design questions and the three spaces, asked of populations.

Every population is a planned random sample (``--sampler random --by ...``): the same space, seed and
``--by`` give the same members under every evaluator, so one population is measured by a zero-cost
proxy, by training at 800 images and (spaces/smt.yaml) at the default 2,400 images and, for the plan's
first 64 members, at 7,200 images; the proxies' rank correlations with training are taken on the same
architectures. Latency is the committed device
profile's prediction (nothing timed, so trials need no exclusive cores). Each search is resumable: run
this again after an interruption and it continues; then ``archspace analyze`` writes the tables.

    python experiments/populations.py            # searches (1 h 45 min on 2 cores here), then the analyses
    python experiments/populations.py --analyze  # only the analyses of the runs already there
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs" / "populations"
OUT = ROOT / "experiments" / "results" / "populations"
PROFILE = "experiments/results/latency_model/profile_eager.json"
COMMON = ["--sampler", "random", "--set", "measure.latency=predicted", "--set", f"measure.profile={PROFILE}",
          "--set", "references=[]", "--quiet"]
BY = {"smt": "heads,aggregation,s3_stacking", "efficientmod": "context_kernel,ratios", "hybrid": "s3_order,msa_heads3"}
N = 128

# (run name, space, members, extra settings), cheapest first; every run of a space shares its plan's first members
RUNS_PLANNED = [
    *((f"{s}_synflow", s, N, ["--set", "evaluator.kind=synflow"]) for s in BY),
    *((f"{s}_naswot", s, N, ["--set", "evaluator.kind=naswot"]) for s in BY),
    ("smt_train", "smt", N, []),  # the space's own proxy: 1 epoch on 2,400 images
    *((f"{s}_train800", s, N, ["--set", "evaluator.budget.train_subset=800"]) for s in BY),
    # the stacking question again at 3x the images, on the plan's first 64 members (32 per order)
    ("smt_train7200", "smt", 64, ["--set", "evaluator.budget.train_subset=7200"]),
]


def search(name: str, space: str, members: int, extra: list[str]) -> float:
    cmd = [sys.executable, "-m", "archspace.cli", "search", f"spaces/{space}.yaml", "--run-dir", str(RUNS / name),
           "--by", BY[space], "--trials", str(members), *COMMON, *extra]
    start = time.monotonic()
    print(f"[populations] {name}: {' '.join(cmd[3:])}", flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)
    return time.monotonic() - start


# SMT's questions: the population split, the single-network ablation table (its rows' labels -> the values)
QUESTIONS = {
    "heads": ("heads", "ablation_heads.csv", {"1 heads": "1", "2 heads": "2", "4 heads": "4", "8 heads": "8"}),
    "aggregation": ("aggregation", "ablation_aggregation.csv", {"none": "none", "single linear": "linear1",
                                                                "IBN": "ibn", "SAA": "saa"}),
    "stacking": ("s3_stacking", "ablation_stacking.csv", {"alternating": "alternate", "4 SAM then": "sequential"}),
}
SENSITIVE = ["s3_sam>=2", "s3_msa>=1"]  # the members whose stage 3 differs between the two orders


def commit_runs(names: list[str]) -> dict[str, Path]:
    """Copy each run's trials.csv and space.yaml into experiments/results/populations/studies/ (the profile path made
    relative to the copy), so the analyses below run on committed files anyone can re-analyse."""
    import shutil

    import yaml

    out = {}
    for name in names:
        src, dst = RUNS / name, OUT / "studies" / name
        if not (src / "trials.csv").exists():
            continue
        dst.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / "trials.csv", dst / "trials.csv")
        space = yaml.safe_load((src / "space.yaml").read_text())
        profile = Path(space["measure"]["profile"])
        space["measure"]["profile"] = str(Path("..", "..", "..", "latency_model", profile.name))
        (dst / "space.yaml").write_text(yaml.safe_dump(space, sort_keys=False))
        out[name] = dst
    return out


def _single_network(table: str, labels: dict[str, str]) -> dict[str, dict[str, float]]:
    import csv

    rows = list(csv.DictReader((ROOT / "experiments" / "results" / table).open()))
    out = {}
    for prefix, value in labels.items():
        row = next(r for r in rows if r["label"].startswith(prefix))
        out[value] = {"paper_top1": float(row["paper_top1"]), "single_top1": float(row["top1_mean"]),
                      "single_sd": float(row["top1_std"])}
    return out


def analyses(runs: dict[str, Path]) -> list[dict]:
    """Every analysis of the committed runs (each written to OUT/<name>/), and the summary rows of SMT's questions."""
    from archspace.analysis import analyze

    summary = []
    for rung in ("train", "train800", "train7200"):
        run = runs.get(f"smt_{rung}")
        if run is None:
            continue
        for question, (param, table, labels) in QUESTIONS.items():
            if rung == "train7200" and question != "stacking":
                continue  # 64 members: 32 per order, 16 per value of the others
            for suffix, where in (("", []), ("_sensitive", SENSITIVE)) if question == "stacking" else (("", []),):
                name = f"{question}{suffix}_{rung}"
                result = analyze([run], by=param, where=where, out=OUT / name)
                longer = table.replace(".csv", "_10x.csv")  # the single-network table at 10x the images, where run
                single = longer if rung == "train7200" and (ROOT / "experiments" / "results" / longer).exists() else table
                summary += _summary(name, result, param, _single_network(single, labels))
                print(f"[populations] {name}: " + ", ".join(f"{g['label']} n={g['n']} mean error {g['mean']:.2f}"
                                                            for g in result["groups"]), flush=True)
    for evaluator in ("synflow", "naswot", "train800", "train"):
        names = [f"{s}_{evaluator}" for s in BY]
        if all(n in runs for n in names):
            analyze([runs[n] for n in names], out=OUT / f"spaces_{evaluator}")
    for space in BY:  # proxies against training, on the same members
        names = [n for n in (f"{space}_{e}" for e in ("synflow", "naswot", "train800", "train", "train7200")) if n in runs]
        if len(names) > 1:
            analyze([runs[n] for n in names], out=OUT / f"proxies_{space}", plots=False)
    return summary


def _summary(name: str, result: dict, param: str, single: dict[str, dict[str, float]]) -> list[dict]:
    """One row per value: the population's n, mean error and best of 8; the paper's and the single network's top-1."""
    rows = []
    for g in result["groups"]:
        value = g["label"].split("=", 1)[1]
        ref = single.get(value, {})
        rows.append({"analysis": name, "param": param, "value": value, "n": g["n"], "mean_error": round(g["mean"], 3),
                     "median_error": round(g["median"], 3), "best_of_8": round(next(b["expected_best"] for b in g["best_of_k"] if b["k"] == 8), 3),
                     "paper_top1": ref.get("paper_top1"), "single_top1": ref.get("single_top1"),
                     "single_sd": ref.get("single_sd")})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--analyze", action="store_true", help="only the analyses of the runs already there")
    ap.add_argument("--only", nargs="+", metavar="RUN", help="search only these runs (then analyse all that exist)")
    args = ap.parse_args()
    if not args.analyze:
        for name, space, members, extra in RUNS_PLANNED:
            if args.only and name not in args.only:
                continue
            seconds = search(name, space, members, extra)
            print(f"[populations] {name}: {seconds:.0f} s", flush=True)
    runs = commit_runs([name for name, *_ in RUNS_PLANNED])
    summary = analyses(runs)
    from archspace.files import atomic_write_text
    from archspace.search.results import to_csv

    cols = ["analysis", "param", "value", "n", "mean_error", "median_error", "best_of_8", "paper_top1", "single_top1",
            "single_sd"]
    atomic_write_text(OUT / "questions.csv", to_csv(summary, cols))
    print(f"[populations] wrote {OUT.relative_to(ROOT)}/", flush=True)


if __name__ == "__main__":
    main()
