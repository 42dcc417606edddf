"""Writes the notebooks in notebooks/ (their cells only call library functions); execute them with nbclient afterwards."""
import nbformat as nbf
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "notebooks"
ABL = {
    "heads": ("SMT Table 7: number of MHMC heads", "MHMC splits the channels into heads, each with its own depth-wise kernel (3, 5, 7, ...). The paper varies the number of heads on SMT-T (1, 2, 4, 6, 8); 6 heads do not divide the widths, so archspace keeps both uneven splits (`front`, `last`)."),
    "aggregation": ("SMT Table 8: aggregation after MHMC", "What mixes the heads' outputs before they modulate the value: nothing, one or two linears, a dense inverted bottleneck (IBN), or SMT's grouped scale-aware aggregation (SAA)."),
    "stacking": ("SMT Table 9: stacking in the penultimate stage", "Stage 3 of SMT-T with only SAM, only MSA, SAM and MSA alternating (the evolutionary hybrid), or four SAM then four MSA."),
    "components": ("SMT Table 10: from attention-free to SMT-T", "The component path: an attention-free network of single-head depth-wise modulation, then MHMC, then SAA, then the evolutionary hybrid stacking (SMT-T). The readings are those whose parameters and FLOPs round to the paper's (`components_readings.yaml` has all 27)."),
    "effmod_components": ("EfficientMod Table 5: the context branch", "EfficientMod-s_conv with f, the 7x7 depth-wise conv or g removed from the context branch, and with the modulation (multiplication) replaced by a sum."),
}
SETUP = """%matplotlib inline
import os, tempfile
from pathlib import Path
from IPython.display import Markdown, display
import matplotlib.pyplot as plt
from archspace.report import tables
RESULTS = tables.results_dir()
RERUN = os.environ.get("ARCHSPACE_NOTEBOOK_RERUN") == "1"  # set to re-run at a small CPU budget"""


def ablation_nb(name, title, intro):
    nb = nbf.v4.new_notebook()
    nb.cells = [
        nbf.v4.new_markdown_cell(f"# {title}\n\n{intro}\n\nThe table below is read from the committed result "
                                 f"`experiments/results/ablation_{name}.json`, produced by\n\n"
                                 f"```bash\narchspace ablate experiments/ablations/{name}.yaml\n```\n\n"
                                 "Parameters and FLOPs are at the paper's protocol (224 px, 1000 classes); the accuracy is a "
                                 "proxy (short training on real Fashion-MNIST), so compare its *order* with the paper's, "
                                 "not its values."),
        nbf.v4.new_code_cell(SETUP),
        nbf.v4.new_code_cell(f'table = tables.load_ablation("{name}", RESULTS)\ndisplay(Markdown(tables.ablation_markdown(table)))'),
        nbf.v4.new_code_cell("tables.plot_ablation(table)\nplt.show()"),
        nbf.v4.new_code_cell("display(Markdown(tables.order_agreement(table)))"),
        nbf.v4.new_markdown_cell("## Re-run at a small budget\n\nWith `ARCHSPACE_NOTEBOOK_RERUN=1` the same table is "
                                 "recomputed from scratch at a tiny CPU budget (1 seed, 100 training images, no latency) "
                                 "through the same machinery; CI does this for every notebook."),
        nbf.v4.new_code_cell(f'if RERUN:\n    small = tables.rerun_small(RESULTS.parent / "ablations" / "{name}.yaml", Path(tempfile.mkdtemp()))\n'
                             f'    display(Markdown(tables.ablation_markdown(small)))'),
    ]
    longer = ROOT / "experiments" / "results" / f"ablation_{name}_10x.json"
    if longer.exists():  # the same table at 10x the training images, where it was measured
        nb.cells[6:6] = [
            nbf.v4.new_markdown_cell("## At 10x the training\n\nThe same rows trained on 24,000 images instead of 2,400 "
                                     "(one epoch, same settings otherwise; `--budget train_subset=24000`), committed as "
                                     f"`experiments/results/ablation_{name}_10x.json`: does the order move towards the paper's?"),
            nbf.v4.new_code_cell(f'longer = tables.load_ablation("{name}_10x", RESULTS)\n'
                                 'display(Markdown(tables.ablation_markdown(longer)))\n'
                                 'tables.plot_ablation(longer)\nplt.show()\n'
                                 'display(Markdown(tables.order_agreement(longer)))'),
        ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbf.write(nb, OUT / f"ablation_{name}.ipynb")


for name, (title, intro) in ABL.items():
    ablation_nb(name, title, intro)

nb = nbf.v4.new_notebook()
nb.cells = [
    nbf.v4.new_markdown_cell("# Accuracy against latency: a search around SMT-T and reference networks\n\n"
                             "The trials of `archspace search spaces/smt.yaml` (committed in `experiments/results/search_smt/`) "
                             "and the space's `references` (SMT-M-6.5M, EfficientMod-xxs, EfficientMod-xs), which the search "
                             "trains and times after its trials exactly as a trial: the same Fashion-MNIST proxy training, "
                             "seed, latency protocol and calibration (`references.csv`). The axis labels state the protocol."),
    nbf.v4.new_code_cell(SETUP + "\nfrom archspace.report.diagnostics import axis_labels\n"
                         "from archspace.report.pareto import front_data, with_references\n"
                         "from archspace.report.plots import plot_front\nfrom archspace.search.space import load_space\n"
                         "from archspace.search.results import read_table"),
    nbf.v4.new_code_cell('run = RESULTS / "search_smt"\nspace = load_space(run / "space.yaml")\nlabels = axis_labels(space)\n'
                         'trials = read_table(run / "trials.csv")\nrefs = read_table(run / "references.csv")\n'
                         'base = {r["number"]: "smt_t (search base)" for r in trials if r.get("reference") == "base"}\n'
                         'fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), dpi=110)\n'
                         'for ax, x in zip(axes, ("latency_ms", "gmacs")):\n'
                         '    data = with_references(front_data(trials, x, references=base), refs)\n'
                         '    plot_front(data, ax=ax, title=f"{len(data.points)} searched architectures, {len(refs)} references",\n'
                         '               x_label=labels[x], y_label=labels["accuracy"])\nplt.show()'),
    nbf.v4.new_code_cell('front = read_table(run / "pareto.csv")\n'
                         'display(Markdown(tables.pareto_markdown(front, ["accuracy", "latency_ms", "gmacs", "mparams"])))\n'
                         'display(Markdown(tables.markdown_table(refs, [("reference", "reference"), ("mparams", "M params"), '
                         '("gmacs", "GMACs"), ("latency_ms", "latency (ms)"), ("accuracy", "proxy top-1"), ("standing", "standing")])))'),
    nbf.v4.new_markdown_cell("Every paper preset's CPU latency (`experiments/presets_cpu.py`, `experiments/results/presets_cpu.csv`; "
                             "its accuracy column is an older, different training budget and is left out here):"),
    nbf.v4.new_code_cell('presets = read_table(RESULTS / "presets_cpu.csv")\n'
                         'display(Markdown(tables.markdown_table(presets, [("preset", "preset"), ("params", "params"), '
                         '("gmacs_smt_paper", "GMACs"), ("latency_ms", "latency (ms)"), ("latency_cv", "cv"), ("device", "device")])))'),
    nbf.v4.new_markdown_cell("## Re-run at a small budget\n\nWith `ARCHSPACE_NOTEBOOK_RERUN=1`, a four-trial search of a "
                             "small space runs from scratch (tiny training, latency at 64 px) and is plotted the same way."),
    nbf.v4.new_code_cell('if RERUN:\n    import archspace\n'
                         '    import yaml\n    work = Path(tempfile.mkdtemp())\n'
                         '    space = yaml.safe_load((RESULTS.parent.parent / "spaces" / "smt.yaml").read_text())\n'
                         '    space.update(base="smt_m_6p5m", budget={"trials": 4}, sampler={"kind": "random"},\n'
                         '                 evaluator={"kind": "train", "budget": {"epochs": 1, "train_subset": 100, "test_subset": 100, "batch_size": 50, "threads": 2}},\n'
                         '                 measure={"resolution": 64, "repeats": 3, "warmup": 1, "calibrate": False}, constraints={}, references=[])\n'
                         '    (work / "small.yaml").write_text(yaml.safe_dump(space))\n'
                         '    run = archspace.run_search(work / "small.yaml", run_dir=work / "run")\n'
                         '    small = read_table(work / "run" / "trials.csv")\n'
                         '    fig, ax = plt.subplots(figsize=(6, 4))\n    plot_front(front_data(small, "latency_ms"), ax=ax, title="small re-run")\n    plt.show()'),
]
nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
nbf.write(nb, OUT / "pareto.ipynb")
nb = nbf.v4.new_notebook()
POP = SETUP + """
from archspace.analysis import analyze, markdown
from archspace.analysis.write import draw_best_of_k, draw_edf, draw_importance
from archspace.search.results import read_table
POPS = RESULTS / "populations"
RUNS = POPS / "studies"
def show(result, title):
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.4), dpi=100)
    draw_edf(axes[0], result); draw_best_of_k(axes[1], result)
    fig.suptitle(title, fontsize=10); plt.show()
    display(Markdown(markdown(result)))"""
nb.cells = [
    nbf.v4.new_markdown_cell("# Design spaces: SMT's questions asked of populations\n\n"
                             "Each SMT ablation (Tables 7-9) compares single networks. Radosavovic et al. (NDS) compare "
                             "*populations*: many networks sampled from the space, by their error distributions (EDFs), "
                             "normalised so that the compared populations have the same parameter distribution. The "
                             "populations here are planned random samples of `spaces/smt.yaml` (and of the other two "
                             "spaces), balanced over the parameter under study, committed in "
                             "`experiments/results/populations/studies/` by `python experiments/populations.py`. Every "
                             "analysis below is recomputed from those files with `archspace analyze` (the library call "
                             "`archspace.analysis.analyze`), so the numbers are the committed tables'."),
    nbf.v4.new_code_cell(POP),
    nbf.v4.new_markdown_cell("## Stacking in stage 3 (SMT Table 9)\n\nThe paper: alternating SAM and MSA 82.2%, "
                             "SAM then MSA 81.9%. Half of the population has a stage 3 in which the two orders give the "
                             "same network (no MSA, or a single SAM); the second analysis keeps the members where they differ."),
    nbf.v4.new_code_cell('run = RUNS / "smt_train"\nout = Path(tempfile.mkdtemp())\n'
                         'stacking = analyze([run], by="s3_stacking", out=out / "stacking")\n'
                         'show(stacking, "all members")\n'
                         'sensitive = analyze([run], by="s3_stacking", where=["s3_sam>=2", "s3_msa>=1"], out=out / "sensitive")\n'
                         'show(sensitive, "members whose stage 3 differs between the orders")'),
    nbf.v4.new_markdown_cell("## MHMC heads (Table 7) and aggregation (Table 8)"),
    nbf.v4.new_code_cell('show(analyze([run], by="heads", out=out / "heads"), "heads")\n'
                         'show(analyze([run], by="aggregation", out=out / "aggregation"), "aggregation")'),
    nbf.v4.new_markdown_cell("## The population answers beside the paper's and the single-network tables\n\n"
                             "`questions.csv`: per value, the population's mean error and expected best of 8, the paper's "
                             "ImageNet top-1 and the single-network proxy top-1 of the ablation table."),
    nbf.v4.new_code_cell('q = read_table(POPS / "questions.csv")\n'
                         'display(Markdown(tables.markdown_table(q, [(k, k) for k in q[0]])))'),
    nbf.v4.new_markdown_cell("## The three spaces compared\n\nSMT, EfficientMod and the hybrid space, 128 planned "
                             "members each, at one epoch on 800 training images (the largest training budget that fit "
                             "the cores here for all three), normalised by parameters; then parameter importance."),
    nbf.v4.new_code_cell('spaces = analyze([RUNS / f"{s}_train800" for s in ("smt", "efficientmod", "hybrid")], out=out / "spaces")\n'
                         'show(spaces, "three spaces, 1 epoch on 800 images")\n'
                         'fig, ax = plt.subplots(figsize=(8, 7), dpi=100)\ndraw_importance(ax, spaces)\nplt.show()'),
    nbf.v4.new_markdown_cell("## Cheap proxies against training, on the same members\n\nKendall's tau of each "
                             "zero-cost proxy (and of the 800-image budget) with the 2,400-image training of the same "
                             "architectures."),
    nbf.v4.new_code_cell('proxies = analyze([RUNS / n for n in ("smt_synflow", "smt_naswot", "smt_train800", "smt_train")], plots=False, out=out / "proxies")\n'
                         'display(Markdown(tables.markdown_table(proxies["proxies"], [("proxy", "proxy"), ("against", "against"), '
                         '("kendall_tau", "Kendall tau"), ("spearman", "Spearman"), ("n", "architectures")])))'),
    nbf.v4.new_markdown_cell("## Re-run at a small budget\n\nWith `ARCHSPACE_NOTEBOOK_RERUN=1`, a 16-member population "
                             "balanced over the stacking order is sampled from scratch (parameter count as the "
                             "score, predicted latency) and analysed the same way."),
    nbf.v4.new_code_cell('if RERUN:\n    import archspace\n    work = Path(tempfile.mkdtemp())\n'
                         '    profile = RESULTS / "latency_model" / "profile_eager.json"\n'
                         '    archspace.run_search(RESULTS.parent.parent / "spaces" / "smt.yaml", run_dir=work / "pop", sampler="random",\n'
                         '                         by=["s3_stacking"], trials=16, overrides={"evaluator.kind": "params", "references": [],\n'
                         '                         "measure.latency": "predicted", "measure.profile": str(profile)})\n'
                         '    show(analyze([work / "pop"], by="s3_stacking", normalize="none"), "small re-run (params as score)")'),
]
nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
nbf.write(nb, OUT / "design_spaces.ipynb")
print("ok")
