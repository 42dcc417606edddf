"""Paper ablation tables: every reproducible row's params and FLOPs equal the printed values; ablate runs end to end."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from archspace.cli import main
from archspace.measure.complexity import complexity
from archspace.search.ablation import ablation_table, load_ablation, rank_correlation
from archspace.spec.official import smt_variant_from_delta

ABLATIONS = Path(__file__).resolve().parents[1] / "experiments" / "ablations"


@pytest.mark.parametrize("name", ["heads", "aggregation", "stacking", "components", "components_readings", "effmod_components"])
def test_reproducible_rows_match_the_paper(name):
    table = ablation_table(load_ablation(ABLATIONS / f"{name}.yaml"), [])
    marked = [r for r in table["rows"] if r["reproduces_paper"]]
    assert marked
    for r in marked:
        assert round(r["params"] / 1e6, 1) == r["paper_params_M"], r["label"]
        assert r["params_match"] is True and r["gflops_match"] is True, r["label"]


def test_rows_are_the_reference_readings(reference_counts):
    by_label = {r["label"]: r for r in reference_counts["smt_ablations"]}
    for name in ("heads", "aggregation", "stacking", "components_readings"):
        for row in load_ablation(ABLATIONS / f"{name}.yaml").rows:
            ref = by_label[row.label]
            c = complexity(row.network())
            assert (c["params"], c["smt-paper"]) == (ref["params"], ref["conv_linear_macs"])
            assert c == complexity(smt_variant_from_delta(ref["cfg_delta"]))
            assert row.reproduces_paper == (ref["params_match_paper"] and ref["conv_linear_macs_match_paper"])


def test_rank_correlation():
    assert rank_correlation([1, 2, 3, 4], [10, 20, 30, 40]) == {"kendall_tau": 1.0, "spearman": 1.0, "n": 4}
    assert rank_correlation([1, 2, 3], [3, 2, 1])["kendall_tau"] == -1.0
    assert rank_correlation([1, 2], [1, 2])["kendall_tau"] is None


def test_ablate_cli_end_to_end(tmp_path, capsys):
    data = yaml.safe_load((ABLATIONS / "stacking.yaml").read_text())
    data["evaluator"] = {"kind": "params"}
    data["measure"] = {"latency": False}
    path = tmp_path / "stacking_cheap.yaml"
    path.write_text(yaml.safe_dump(data))
    out = tmp_path / "results"
    argv = ["ablate", str(path), "--run-dir", str(tmp_path / "run"), "--out", str(out), "--quiet", "--format", "json"]
    assert main(argv) == 0
    table = json.loads(capsys.readouterr().out)
    assert [r["label"] for r in table["rows"]] == [r["label"] for r in data["rows"]]
    assert all(r["seeds"] == 3 for r in table["rows"])
    assert table["rows"][0]["params"] == 11_815_784 and table["rows"][0]["gmacs_smt_paper"] == 2.456
    assert (out / "ablation_stacking.csv").exists() and json.loads((out / "ablation_stacking.json").read_text())["rows"]
    # resumable: running again evaluates nothing new
    assert main(argv) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["rows"] == table["rows"]


def test_ablation_text_is_a_table_with_the_correlation_in_words():
    from archspace.report.tables import ablation_text, load_ablation as load_result

    table = load_result("heads", ABLATIONS.parent / "results")
    lines = ablation_text(table).splitlines()
    assert lines[0] == "SMT Table 7: number of MHMC heads (SMT-T)"
    assert lines[1].split("  ")[0] == "variant" and "proxy top-1" in lines[1] and "paper top-1" in lines[1]
    assert len(lines) == 3 + len(table["rows"]) + 1
    row = lines[3 + 2]  # 4 heads: its top-1 keeps the column's two decimals
    assert row.startswith("4 heads ") and " 74.40 " in row and row.endswith("82.2")
    assert lines[-1] == ("rank correlation of proxy top-1 with the paper's top-1: Kendall tau -0.2148 "
                         "(90% over seeds: -0.519 to 0.215), Spearman -0.3531, over 6 rows")
    assert "{" not in "\n".join(lines)


def test_ablation_text_without_accuracy_says_why_there_is_no_correlation():
    from archspace.report.tables import ablation_text

    table = ablation_table(load_ablation(ABLATIONS / "stacking.yaml"), [])
    text = ablation_text(table)
    assert "proxy top-1" not in text.splitlines()[1]
    assert text.splitlines()[-1].endswith("no rank correlation: 0 row(s) with both a proxy and a paper top-1 (needs 3)")


def test_default_run_dir_is_under_runs_never_the_committed_results():
    from archspace.search.ablation import default_run_dir

    assert default_run_dir(load_ablation(ABLATIONS / "heads.yaml")) == Path("runs") / "ablation_heads"
