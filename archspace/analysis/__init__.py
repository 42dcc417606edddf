"""Design-space statistics of archspace runs: which design choice, or which space, is better over a population.

:func:`analyze` reads runs (run directories, or studies in a shared storage, as they are now: a search still
running gives the trials ended so far), splits them into populations (one per run, or one per value of a
parameter with ``by``), and compares those by their error distributions as Radosavovic et al. do (NDS):
complexity-normalised EDFs with bootstrap bands, two-sample KS with permutation p-values, which EDF lies
above where, the mean difference at matched complexity with its interval, the NDS sample-size check, the
expected best of k random samples, parameter importance (PED-ANOVA, and fANOVA where scikit-learn is
installed) per objective, and the rank correlation of every cheap proxy with training where two runs
measured the same architectures. The numbers go to ``analysis.json`` and ``groups.csv``/``pairs.csv``,
the figures to ``edf.png``, ``best_of_k.png``, ``sample_size.png`` and ``importance.png``, each with its
protocol. The statistics themselves are in :mod:`archspace.analysis.stats`.
"""
from __future__ import annotations

import itertools
import math
import operator
import re
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from ..spec.errors import SpecError
from . import stats
from .write import markdown

__all__ = ["analyze", "importance", "load_runs", "markdown", "Population", "stats"]

NORMALIZE = ("params", "flops", "none")
COMPLEXITY = {"params": "mparams", "flops": "gmacs"}
METRIC_LABELS = {"error": "top-1 error (%)", "accuracy": "top-1 (%)", "latency_ms": "latency (ms)", "gmacs": "GMACs",
                 "mparams": "params (M)", "images_per_s": "throughput (img/s)"}
LOWER_BETTER = {"error": True, "latency_ms": True, "gmacs": True, "mparams": True, "images_per_s": False,
                "accuracy": False}
_OPS = {">=": operator.ge, "<=": operator.le, "==": operator.eq, "!=": operator.ne, ">": operator.gt, "<": operator.lt}
_WHERE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(>=|<=|==|!=|>|<|=)\s*(.+?)\s*$")


class Population:
    """Members of one population: their metric values (as losses, lower better), complexities and identities."""

    def __init__(self, label: str, run: str, rows: list[dict], loss: np.ndarray, complexity: Optional[np.ndarray]):
        self.label, self.run, self.rows, self.loss, self.complexity = label, run, rows, loss, complexity
        self.planned: Optional[int] = None  # members of the run's population plan with this value

    @property
    def n(self) -> int:
        return len(self.loss)

    @property
    def distinct(self) -> int:
        return len({r.get("spec_hash") for r in self.rows})


def _where(clauses: Sequence[str]) -> list[tuple[str, Any, Any]]:
    out = []
    for clause in clauses:
        m = _WHERE.match(clause)
        if not m:
            raise SpecError(f"--where: {clause!r} must look like PARAM>=VALUE (operators: >= <= == != > <)")
        import yaml

        name, op, value = m.group(1), "==" if m.group(2) == "=" else m.group(2), yaml.safe_load(m.group(3))
        out.append((name, _OPS[op], value))
    return out


def _column(space: Any, name: str) -> str:
    """The table column of a parameter or value name (``heads`` -> ``param_heads``)."""
    from ..search.results import PARAM

    if name in [p.name for p in space.params]:
        return PARAM + name
    if name in LOWER_BETTER and name != "error":
        return name
    raise SpecError(f"{name!r} is neither a parameter of space {space.name!r} ({', '.join(p.name for p in space.params)}) "
                    f"nor a value column (accuracy, latency_ms, gmacs, mparams, images_per_s)")


def load_runs(runs: Sequence[Union[str, Path]], *, storage: Optional[str] = None) -> list[tuple[str, Any, list[dict]]]:
    """(name, space, rows) of each run, read as it is now."""
    from ..jobs import run_rows

    if not runs:
        raise SpecError("analyze: name at least one run directory (or storage URL)")
    out, names = [], set()
    for source in runs:
        space, rows = run_rows(source, storage=storage)
        name = Path(str(source)).name if "://" not in str(source) else space.name
        while name in names:
            name += "'"
        names.add(name)
        out.append((name, space, rows))
    return out


def _metric(spaces: list, metric: Optional[str]) -> str:
    trained = all(s.evaluator.kind == "train" for s in spaces)
    if metric is None:
        return "error" if trained else "accuracy"
    if metric == "error" and not trained:
        raise SpecError("--metric: error is 100 - top-1 of a training evaluator; these runs score with a zero-cost "
                        "proxy (use --metric accuracy for the score, or latency_ms, gmacs, mparams)")
    if metric not in LOWER_BETTER:
        raise SpecError(f"--metric: {metric!r} is not a metric (use error, accuracy, latency_ms, gmacs, mparams, "
                        "images_per_s)")
    return metric


def _value(row: dict, metric: str) -> Optional[float]:
    v = row.get("accuracy" if metric == "error" else metric)
    if not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return 100.0 - float(v) if metric == "error" else float(v)


def populations(loaded: list[tuple[str, Any, list[dict]]], metric: str, normalize: str, by: Optional[str] = None,
                where: Sequence[str] = ()) -> list[Population]:
    """The populations to compare: per run, or per value of ``by`` within each run (complete trials that pass
    every ``where`` clause, with a finite metric and complexity)."""
    lower = LOWER_BETTER[metric]
    clauses = _where(where)
    out = []
    for name, space, rows in loaded:
        members = [r for r in rows if r.get("verdict") == "complete"]
        for pname, op, value in clauses:
            col = _column(space, pname)
            members = [r for r in members if r.get(col) is not None and _safe(op, r.get(col), value)]
        key = COMPLEXITY.get(normalize)
        members = [r for r in members if _value(r, metric) is not None
                   and (key is None or (isinstance(r.get(key), (int, float)) and r[key] > 0))]
        if by is None:
            groups = [(name, members)]
        else:
            col = _column(space, by)
            values = _ordered_values(space, by, members, col)
            prefix = f"{name}: " if len(loaded) > 1 else ""
            groups = [(f"{prefix}{by}={v}", [r for r in members if str(r.get(col)) == v]) for v in values]
        planned = _planned(space, by)
        for label, group in groups:
            if not group:
                continue
            loss = np.array([_value(r, metric) * (1 if lower else -1) for r in group])
            comp = np.array([float(r[key]) for r in group]) if key else None
            pop = Population(label, name, group, loss, comp)
            pop.planned = planned.get(label.rsplit("=", 1)[-1]) if by is not None else None
            out.append(pop)
    return out


def _planned(space: Any, by: Optional[str]) -> dict[str, int]:
    """Members per value of ``by`` in the run's population plan ({} when the run is no population over ``by``)."""
    if by is None or by not in space.sampler.by:
        return {}
    from ..search.population import counts

    try:
        return counts(space)[by]
    except Exception:  # noqa: BLE001 - a base spec file that moved: the plan cannot be redrawn here
        return {}


def _safe(op: Any, a: Any, b: Any) -> bool:
    try:
        return bool(op(a, b))
    except TypeError:
        return bool(op(str(a), str(b)))


def _ordered_values(space: Any, by: str, members: list[dict], col: str) -> list[str]:
    p = next((p for p in space.params if p.name == by), None)
    if p is not None:
        from ..search.population import values_of

        known = [str(v) for v in values_of(p)] if (p.choices is not None or p.is_int) else []
    else:
        known = []
    seen = sorted({str(r.get(col)) for r in members if r.get(col) is not None} - set(known))
    return [v for v in known if any(str(r.get(col)) == v for r in members)] + seen


def analyze(runs: Sequence[Union[str, Path]], *, by: Optional[str] = None, normalize: str = "params",
            metric: Optional[str] = None, where: Sequence[str] = (), storage: Optional[str] = None,
            out: Optional[Union[str, Path]] = None, bins: Optional[int] = None, permutations: int = 2000,
            resamples: int = 1000, level: float = 0.9, plots: bool = True, seed: int = 0) -> dict[str, Any]:
    """Compare the populations of ``runs`` (or of the values of ``by`` within them); returns the analysis as a dict
    and writes it to ``out`` (default ``RUN_DIR/analysis`` of the first run; ``None`` with ``plots=False`` and no
    run directory: nothing written)."""
    if normalize not in NORMALIZE:
        raise SpecError(f"--normalize: {normalize!r} is not a normalisation (use params, flops or none)")
    if not 0.5 <= level < 1:
        raise SpecError(f"--level: {level} must be in [0.5, 1)")
    for option, value, lo, hi in (("--permutations", permutations, 9, 1_000_000), ("--bins", bins, 1, 50),
                                  ("resamples", resamples, 10, 1_000_000)):
        if value is not None and (isinstance(value, bool) or not lo <= value <= hi):
            raise SpecError(f"{option}: {value} must be between {lo:,} and {hi:,}")
    from ..search.results import protocol_words

    loaded = load_runs(runs, storage=storage)
    spaces = [s for _, s, _ in loaded]
    metric = _metric(spaces, metric)
    if normalize == "flops":
        conventions = {_convention(s) for s in spaces}
        if len(conventions) > 1:
            raise SpecError(f"--normalize flops: the runs count MACs in different conventions ({', '.join(sorted(conventions))}); "
                            "use --normalize params")
    if by is not None:
        for _, space, _ in loaded:
            _column(space, by)
    pops = populations(loaded, metric, normalize, by, where)
    if not pops:
        raise SpecError("analyze: no complete trial with the metric in these runs (is the search still starting?)")
    lower = LOWER_BETTER[metric]
    norm = normalize != "none"
    weights: list[Optional[np.ndarray]]
    edges = shared = None
    if norm and len(pops) > 1:
        edges = stats.bin_edges([p.complexity for p in pops], bins or stats.default_bins([p.n for p in pops]))
        shared = stats.shared_bins([p.complexity for p in pops], edges)
        if not shared.any():
            raise SpecError("--normalize: the populations share no complexity bin; compare with --normalize none "
                            "(or sample more members per population)")
        weights = stats.nds_weights([p.complexity for p in pops], edges=edges)
    elif norm:
        weights = [None]  # one population: normalising against itself changes nothing
    else:
        weights = [None] * len(pops)
    lo_x = min(float(p.loss.min()) for p in pops)
    hi_x = max(float(p.loss.max()) for p in pops)
    grid = np.linspace(lo_x, hi_x, 200)
    groups = []
    for i, (p, w) in enumerate(zip(pops, weights)):
        xs, f = stats.edf(p.loss, w, grid)
        band = stats.bootstrap_band(p.loss, p.complexity if (norm and len(pops) > 1) else None, edges, shared, grid,
                                    level=level, resamples=resamples, seed=seed + i)
        wn = stats._norm(w, p.n)
        mean = float(np.dot(wn, p.loss))
        groups.append({
            "label": p.label, "run": p.run, "n": p.n, "planned": p.planned, "distinct": p.distinct,
            "n_weighted": int(np.count_nonzero(wn)), "n_effective": 1.0 / float(np.sum(wn ** 2)),
            "mean": _shown(mean, lower), "median": _shown(float(np.median(p.loss)), lower),
            "best": _shown(float(p.loss.min()), lower),
            "edf": {"x": [_shown(x, lower) for x in grid], "F": f.tolist(), "lo": band[0].tolist(), "hi": band[1].tolist()},
            "best_of_k": [{**b, "expected_best": _shown(b["expected_best"], lower), "lo": _shown(b["lo"], lower),
                           "hi": _shown(b["hi"], lower)} for b in stats.best_of_k(p.loss, w, level=level)],
            "sample_size": stats.sample_size_check(p.loss, w, seed=seed + i),
        })
    pairs, skipped = [], 0
    measured = {name: _accuracy_protocol(space) for name, space, _ in loaded}
    for (i, a), (j, b) in itertools.combinations(enumerate(pops), 2):
        if metric in ("error", "accuracy") and measured[a.run] != measured[b.run]:
            skipped += 1  # a zero-cost score against a training accuracy: not one scale
            continue
        # every pair on the comparison's own bins and weights, so a pair's difference is the difference of its means
        wa, wb = weights[i], weights[j]
        ks = stats.ks_test(a.loss, b.loss, a.complexity if norm else None, b.complexity if norm else None,
                           edges=edges, shared=shared, bins=bins, permutations=permutations, seed=seed)
        diff = stats.mean_difference(a.loss, b.loss, wa, wb, ca=a.complexity if norm else None,
                                     cb=b.complexity if norm else None, edges=edges, shared=shared, level=level,
                                     resamples=2 * resamples, seed=seed)
        dom = stats.dominance(a.loss, b.loss, wa, wb)
        sign = 1 if lower else -1
        d_lo, d_hi = sorted((sign * diff["lo"], sign * diff["hi"]))
        pairs.append({
            "a": a.label, "b": b.label, "ks": ks["statistic"], "p_value": ks["p_value"],
            "permutations": ks["permutations"], "n_effective": ks["n_effective"],
            "mean_difference": sign * diff["difference"], "diff_lo": d_lo, "diff_hi": d_hi, "level": level,
            "p_a_better": diff["p_a_better"],
            "better": (a.label if diff["hi"] < 0 else b.label if diff["lo"] > 0 else None),
            "dominant": {"a": a.label, "b": b.label}.get(dom["dominant"], dom["dominant"]),
            "a_above": dom["a_above"], "b_above": dom["b_above"],
            "crossings": [_shown(x, lower) for x in dom["crossings"]][:8],
        })
    for p, adjusted in zip(pairs, stats.holm([p["p_value"] for p in pairs])):
        p["p_holm"] = adjusted  # several pairs tested at once: Holm's step-down adjustment over this analysis
    result = {
        "runs": [{"name": n, "space": s.name, "sampler": s.sampler.kind, "by": list(s.sampler.by),
                  "evaluator": s.evaluator.kind, "protocol": w, "trials": len(rows),
                  "trial_seconds": round(sum(float(r.get("seconds") or 0) for r in rows), 1),
                  "complete": sum(r.get("verdict") == "complete" for r in rows),
                  "running": sum(r.get("verdict") == "running" for r in rows)}
                 for (n, s, rows), w in zip(loaded, [protocol_words(s) for s in spaces])],
        "metric": metric, "metric_label": _metric_label(metric, spaces), "lower_is_better": lower,
        "normalize": normalize, "bins": None if edges is None else len(edges) + 1,
        "shared_bins": None if shared is None else int(shared.sum()),
        "by": by, "where": list(where), "level": level, "groups": groups, "pairs": pairs,
        "importance": _importances(loaded),
        "proxies": _proxy_correlations(loaded),
        "notes": _notes(loaded) + ([f"{skipped} pair(s) of populations not compared: their runs measure accuracy "
                                    "differently (see proxies for how their rankings agree)"] if skipped else []),
    }
    target = _out_dir(runs, storage, out)
    if target is not None:
        from .write import write

        result["files"] = [str(f) for f in write(result, target, plots=plots)]
    return result


def _shown(loss: float, lower: bool) -> float:
    return float(loss if lower else -loss)


def _convention(space: Any) -> str:
    return next((o.convention for o in space.objectives if o.metric == "flops"), "smt-paper")


def _metric_label(metric: str, spaces: list) -> str:
    if metric == "accuracy" and any(s.evaluator.kind != "train" for s in spaces):
        kinds = sorted({s.evaluator.kind for s in spaces})
        return f"{'/'.join(kinds)} score"
    return METRIC_LABELS[metric]


def _notes(loaded: list) -> list[str]:
    notes = []
    for name, space, rows in loaded:
        if space.sampler.kind != "random":
            notes.append(f"{name}: sampled by {space.sampler.kind}, not at random: its EDF describes where that search "
                         "looked, not the space")
        running = sum(r.get("verdict") == "running" for r in rows)
        if running:
            notes.append(f"{name}: {running} trial(s) still running: the analysis holds the trials ended so far")
    return notes


def _out_dir(runs: Sequence, storage: Optional[str], out: Optional[Union[str, Path]]) -> Optional[Path]:
    if out is not None:
        return Path(out)
    first = str(runs[0])
    return None if "://" in first else Path(first) / "analysis"


# ----------------------------------------------------------------------------- importance


def _objectives(space: Any) -> list[tuple[str, str, bool]]:
    """(column, label, lower_is_better) of each objective of a space."""
    out = []
    for o in space.objectives:
        col = o.key
        out.append((col, METRIC_LABELS.get(col, col), o.direction == "minimize"))
    return out


def importance(rows: list[dict], space: Any, column: str, lower_is_better: bool, *, seed: int = 0) -> dict[str, Any]:
    """PED-ANOVA (and fANOVA when scikit-learn is installed) importance of every parameter for one column, through
    Optuna, from the complete trials of a table; parameters that never vary are left out."""
    import optuna

    from ..search.results import PARAM

    dists = {}
    for p in space.params:
        values = {r.get(PARAM + p.name) for r in rows if r.get("verdict") == "complete"}
        if len(values - {None}) < 2:
            continue
        if p.choices is not None:
            dists[p.name] = optuna.distributions.CategoricalDistribution(sorted({str(v) for v in values if v is not None}))
        elif p.is_int:
            dists[p.name] = optuna.distributions.IntDistribution(int(p.low), int(p.high), step=int(p.step or 1))
        else:
            dists[p.name] = optuna.distributions.FloatDistribution(float(p.low), float(p.high))
    trials = []
    for r in rows:
        v = r.get(column)
        if r.get("verdict") != "complete" or not isinstance(v, (int, float)) or not math.isfinite(v):
            continue
        params = {}
        for name, d in dists.items():
            raw = r.get(PARAM + name)
            if raw is None:
                break
            params[name] = str(raw) if isinstance(d, optuna.distributions.CategoricalDistribution) else raw
        else:
            trials.append(optuna.trial.create_trial(params=params, distributions=dists,
                                                    value=float(v) if lower_is_better else -float(v)))
    out: dict[str, Any] = {"column": column, "n": len(trials)}
    if len(trials) < 8 or not dists:
        out["note"] = f"{len(trials)} complete trials: too few for importance (at least 8)"
        return out
    from ..search.engine import quiet_optuna

    with quiet_optuna():
        study = optuna.create_study(direction="minimize")
        study.add_trials(trials)
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out["ped_anova"] = _ordered(optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.PedAnovaImportanceEvaluator(), normalize=True))
            try:
                import sklearn  # noqa: F401
            except ImportError:
                out["fanova_note"] = "fANOVA not computed: it needs scikit-learn (pip install 'archspace[analysis]')"
            else:
                out["fanova"] = _ordered(optuna.importance.get_param_importances(
                    study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=seed), normalize=True))
    return out


def _ordered(importances: dict[str, float]) -> dict[str, float]:
    """Most important first; ties by name (Optuna's order of ties varies between processes)."""
    return dict(sorted(importances.items(), key=lambda kv: (-round(kv[1], 9), kv[0])))


def _importances(loaded: list) -> list[dict[str, Any]]:
    out = []
    for name, space, rows in loaded:
        for col, label, lower in _objectives(space):
            if space.evaluator.kind != "train" and col == "accuracy":
                label = f"{space.evaluator.kind} score"
            out.append({"run": name, "objective": label, **importance(rows, space, col, lower)})
    return out


# ----------------------------------------------------------------------------- proxies


def _proxy_correlations(loaded: list) -> list[dict[str, Any]]:
    """Rank correlation of each cheaper accuracy measurement with each costlier one on the architectures both runs
    measured (matched by spec hash): a zero-cost proxy against training, a small training budget against a larger."""
    out = []
    for (na, sa, ra), (nb, sb, rb) in itertools.combinations(loaded, 2):
        if sa.evaluator.key == sb.evaluator.key:
            continue
        va, vb = _by_hash(ra), _by_hash(rb)
        common = sorted(set(va) & set(vb))
        if len(common) < 5:
            continue
        (cheap, ncheap, vcheap), (dear, ndear, vdear) = sorted(
            [(sa, na, va), (sb, nb, vb)], key=lambda t: _cost_rank(t[0]))
        x = np.array([vcheap[h] for h in common])
        y = np.array([vdear[h] for h in common])
        out.append({"proxy": ncheap, "proxy_evaluator": _accuracy_protocol(cheap), "against": ndear,
                    "against_evaluator": _accuracy_protocol(dear), **stats.rank_correlation(x, y)})
    return out


def _by_hash(rows: list[dict]) -> dict[str, float]:
    out: dict[str, list[float]] = {}
    for r in rows:
        v = r.get("accuracy")
        if r.get("verdict") == "complete" and r.get("spec_hash") and isinstance(v, (int, float)) and math.isfinite(v):
            out.setdefault(str(r["spec_hash"]), []).append(float(v))
    return {h: float(np.mean(v)) for h, v in out.items()}


def _accuracy_protocol(space: Any) -> str:
    from ..search.results import accuracy_label, protocol

    return accuracy_label(protocol(space))


def _cost_rank(space: Any) -> tuple[int, int]:
    ev = space.evaluator
    if ev.kind != "train":
        return (0, 0)
    b = ev.budget
    return (1, b.epochs * (b.train_subset or 60000))


