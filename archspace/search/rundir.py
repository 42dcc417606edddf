"""Run directories: everything a search needs is checked before anything is written, and nothing lands outside.

:func:`prepare_run` opens and checks the storage URL, the backend, the devices and the dataset,
compares the space with the one a run directory already holds, and only then writes
``space.yaml``. :func:`safe_child` keeps every file a run writes inside its directory, whatever
name comes back from a shared storage.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

from ..files import check_name
from ..spec.errors import SpecError
from .space import Space, base_spec, load_space
from .storage import check_url, open_storage

HEX = re.compile(r"^[0-9a-f]{6,64}$")


def run_space(run_dir: Path, *, check: bool = True) -> Space:
    """The space a run was made with (run_dir/space.yaml); ``check=False`` to read its results only (the base and
    device profiles it names need not be where they were)."""
    path = Path(run_dir) / "space.yaml"
    if not path.exists():
        raise SpecError(f"{run_dir}: not a run directory (no space.yaml; run 'archspace search SPACE --run-dir {run_dir}')")
    return load_space(path, check=check)


def safe_child(run_dir: Path, name: str) -> Path:
    """``run_dir / name`` when ``name`` is a plain file name; SpecError otherwise (never a path outside ``run_dir``)."""
    try:
        check_name(name)
    except ValueError as exc:
        raise SpecError(f"{run_dir}: refusing to write {exc}") from None
    return Path(run_dir) / name


def check_devices(space: Space) -> None:
    """CUDA asked for where there is none: one line naming the field."""
    wants = [("evaluator.device", space.evaluator.device), ("measure.device", space.measure.device if space.measure.timed else "cpu")]
    for field, device in wants:
        if device != "cpu" and not device.startswith("cuda"):
            raise SpecError(f"{field}: {device!r} is not a device (use cpu or cuda)")
        if device.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                raise SpecError(f"{field}: {device!r} but CUDA is not available on this machine (use cpu)")


def check_dataset(space: Space) -> None:
    """The evaluator's dataset can be read (zero-cost proxies read a batch of it too)."""
    if space.evaluator.kind in ("params", "flops"):
        return
    from ..evaluate.data import load_dataset

    try:
        load_dataset(space.evaluator.dataset, space.evaluator.dataset_root, "test")
    except ValueError as exc:  # DatasetNotFound and unknown dataset names
        raise SpecError(f"evaluator.dataset: {' '.join(str(exc).split())}") from None


def check_backend(backend: str) -> None:
    if backend == "ray":
        try:
            import ray  # noqa: F401
            from ray import tune  # noqa: F401
        except ImportError:
            raise SpecError("--backend ray needs Ray Tune: pip install 'archspace[ray]'") from None


def prepare_run(space: Space, run_dir: Optional[Path] = None, *, storage: Optional[str] = None,
                backend: str = "optuna") -> Path:
    """Check everything a search needs, then write ``run_dir/space.yaml``; returns the run directory."""
    import yaml

    from ..files import atomic_write_text

    run_dir = Path(run_dir) if run_dir is not None else Path("runs") / space.name
    if storage:
        check_url(storage)
    check_backend(backend)
    check_devices(space)
    check_dataset(space)
    from .latency import check as check_profiles

    check_profiles(space, base_spec(space))
    if storage:
        open_storage(storage)  # reachable, driver installed, tables in place
    stored = run_dir / "space.yaml"
    mine = comparable(space)
    if stored.exists():
        theirs = comparable(load_space(stored))
        if theirs != mine:
            changed = sorted(k for k in mine if mine.get(k) != theirs.get(k))
            raise SpecError(f"{run_dir}: holds a run of a different space (differs in {', '.join(changed)}); use another --run-dir")
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(stored, yaml.safe_dump(space.model_dump(mode="json"), sort_keys=False))
    return run_dir


def comparable(space: Space) -> dict:
    """What must not change between runs of one run directory (the budget and worker settings may)."""
    from .latency import key

    return {**space.model_dump(mode="json", exclude={"budget", "workers"}), "measure": key(space)}
