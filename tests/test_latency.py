"""Latency records: protocol fields, no global side effects, interleaving, comparison. No timing asserts."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
import torch
from torch import nn

from archspace.measure import (
    Calibration,
    LatencyProtocol,
    LatencyRecord,
    LatencySettings,
    calibrate,
    calibrated_samples,
    compare,
    load_or_calibrate,
    measure_latencies,
    measure_latency,
    measure_throughput,
    onnx_session,
)

FAST = LatencySettings(resolution=16, warmup=1, repeats=3)


class Tiny(nn.Module):
    """Conv -> pool -> Linear, logging the thread count and its own name when called."""

    def __init__(self, tag: str = "tiny", log: list[str] | None = None) -> None:
        super().__init__()
        self.tag, self.log = tag, log
        self.threads_seen: list[int] = []
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.threads_seen.append(torch.get_num_threads())
        if self.log is not None:
            self.log.append(self.tag)
        return self.fc(self.conv(x).mean(dim=(2, 3)))


def test_record_carries_protocol() -> None:
    record = measure_latency(Tiny(), FAST.updated(batch=2), name="tiny")
    assert isinstance(record, LatencyRecord)
    p = record.protocol
    assert isinstance(p, LatencyProtocol)
    assert (p.device, p.runtime, p.dtype, p.batch, p.resolution) == ("cpu", "eager", "fp32", 2, 16)
    assert (p.channels_last, p.threads, p.warmup, p.repeats, p.statistic) == (False, 1, 1, 3, "median")
    assert p.torch_version == torch.__version__ and p.device_name
    assert record.name == "tiny" and record.interleaved_with == 1
    assert 0 < record.median_ms <= record.p90_ms
    assert record.cv >= 0
    assert record.images_per_s == pytest.approx(2e3 / record.median_ms)
    assert record.peak_memory_source == "cpu_maxrss_growth" and record.peak_memory_bytes >= 0
    assert LatencyRecord.model_validate_json(record.model_dump_json()) == record


def test_thread_clock_is_part_of_the_protocol() -> None:
    wall = measure_latency(Tiny(), FAST, name="wall")
    thread = measure_latency(Tiny(), FAST.updated(clock="thread"), name="thread")
    assert (wall.protocol.clock, thread.protocol.clock) == ("wall", "thread")
    assert thread.median_ms >= 0  # CPU-time clocks can be coarse on some platforms
    assert compare([wall, thread]).differing == {"clock": ["wall", "thread"]}


def test_threads_pinned_then_restored() -> None:
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        model = Tiny()
        measure_latency(model, FAST.updated(threads=1))
        assert set(model.threads_seen) == {1}
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)


def test_model_untouched() -> None:
    model = Tiny().train()
    record = measure_latency(model, FAST.updated(dtype="bf16", channels_last=True))
    assert record.protocol.dtype == "bf16" and record.protocol.channels_last
    assert all(m.training for m in model.modules())
    assert model.conv.weight.dtype == torch.float32
    assert model.conv.weight.is_contiguous()


def test_eval_mode_restored_when_no_copy_needed() -> None:
    model = Tiny().train()
    measure_latency(model, FAST)
    assert all(m.training for m in model.modules())


def test_repeats_interleaved_round_robin() -> None:
    log: list[str] = []
    records = measure_latencies({"a": Tiny("a", log), "b": Tiny("b", log)}, FAST)
    assert log == ["a", "b"] + ["a", "b"] * 3  # warm-up per model, then a, b, a, b, ...
    assert set(records) == {"a", "b"}
    assert records["a"].protocol == records["b"].protocol
    assert records["a"].interleaved_with == 2


def test_compare_same_protocol() -> None:
    records = measure_latencies({"a": Tiny(), "b": Tiny()}, FAST)
    table = compare(records, strict=True)
    assert table.comparable and table.differing == {}
    assert [row["name"] for row in table.rows] == ["a", "b"]
    assert table.rows[0]["vs_first"] == 1.0
    assert "WARNING" not in table.render()


def test_compare_flags_differing_protocols() -> None:
    fp32 = measure_latency(Tiny(), FAST, name="fp32")
    bf16 = measure_latency(Tiny(), FAST.updated(dtype="bf16", threads=2), name="bf16")
    table = compare([fp32, bf16])
    assert not table.comparable
    assert table.differing == {"dtype": ["fp32", "bf16"], "threads": [1, 2]}
    assert [(r["dtype"], r["threads"]) for r in table.rows] == [("fp32", 1), ("bf16", 2)]
    text = table.render()
    assert "WARNING: protocols differ in dtype (fp32 / bf16), threads (1 / 2)" in text
    with pytest.raises(ValueError, match="records: protocols differ in dtype, threads"):
        compare([fp32, bf16], strict=True)


class OutOfMemoryAbove(nn.Module):
    """Raises torch.OutOfMemoryError for batches larger than ``limit``."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.fc = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > self.limit:
            raise torch.OutOfMemoryError("fake out of memory")
        return self.fc(x.mean(dim=(2, 3)))


def test_throughput_halves_batch_on_oom() -> None:
    record = measure_throughput(OutOfMemoryAbove(limit=5), FAST.updated(batch=16))
    assert record.protocol.batch == 4 and record.batch_requested == 16
    with pytest.raises(torch.OutOfMemoryError):
        measure_throughput(OutOfMemoryAbove(limit=0), FAST.updated(batch=4))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"runtime": "tensorrt"}, "runtime: unknown runtime 'tensorrt'"),
        ({"dtype": "fp64"}, "dtype: unknown dtype 'fp64'"),
        ({"batch": 0}, "batch: expected an int >= 1"),
        ({"repeats": 0}, "repeats: expected an int >= 1"),
        ({"device": "tpu"}, "device:"),
        ({"runtime": "onnxrt-cpu", "dtype": "bf16"}, "dtype: runtime 'onnxrt-cpu'"),
        ({"clock": "cycles"}, "clock: unknown clock 'cycles'"),
        ({"clock": "thread", "threads": 2}, "clock: 'thread' times the calling thread's CPU time"),
    ],
)
def test_bad_arguments(kwargs: dict, message: str) -> None:
    """Settings refuse bad values when built (the device when measured), naming the field."""
    with pytest.raises(ValueError, match=message):
        measure_latency(Tiny(), FAST.updated(**kwargs))


def test_one_settings_object_not_keywords() -> None:
    with pytest.raises(TypeError):
        measure_latency(Tiny(), threads=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="settings: expected a LatencySettings, got dict"):
        measure_latency(Tiny(), {"threads": 1})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="frozen"):
        FAST.threads = 2  # type: ignore[misc]
    assert LatencySettings().model_dump() == {
        "device": "cpu", "batch": 1, "resolution": 224, "dtype": "fp32", "runtime": "eager", "threads": 1,
        "warmup": 3, "repeats": 15, "channels_last": False, "clock": "wall"}


def test_a_space_measure_is_latency_settings_and_measures_as_one() -> None:
    from archspace.search.space import Measure

    m = Measure(resolution=16, warmup=1, repeats=3)
    assert isinstance(m, LatencySettings) and (m.latency, m.calibrate, m.warmup, m.repeats) == ("measured", True, 1, 3)
    assert Measure(latency=True).latency == "measured" and not Measure(latency=False).timed
    assert m.latency_settings() == FAST and type(m.latency_settings()) is LatencySettings
    assert measure_latency(Tiny(), m).protocol == measure_latency(Tiny(), FAST).protocol


def test_settings_import_without_torch() -> None:
    code = "import sys, archspace.measure.latency.settings; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split() == ["False"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_cuda_without_cuda_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="device: 'cuda' requested but CUDA is not available"):
        measure_latency(Tiny(), FAST.updated(device="cuda"))


def test_onnxrt_without_onnxruntime_names_the_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if it were not installed
    with pytest.raises(ImportError, match="pip install onnxruntime onnx onnxscript"):
        measure_latency(Tiny(), FAST.updated(runtime="onnxrt-cpu"))


needs_onnx = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("onnxruntime", "onnx", "onnxscript")),
    reason="needs the onnx extra: pip install 'archspace[onnx]'",
)


@needs_onnx
@pytest.mark.parametrize("preset", ["efficientmod_xxs"])  # SMT's ONNX file is checked by test_export
def test_onnx_export_runs_in_onnx_runtime_with_the_same_outputs(preset: str) -> None:
    import archspace

    torch.manual_seed(0)
    model = archspace.build(archspace.load_spec(preset), num_classes=10).eval()
    x = torch.randn(2, 3, 64, 64)
    session = onnx_session(model, x)
    (out,) = session.run(None, {"input": x.numpy()})
    with torch.inference_mode():
        expected = model(x)
    assert out.shape == (2, 10)
    torch.testing.assert_close(torch.from_numpy(out), expected, rtol=1e-4, atol=1e-4)


@needs_onnx
def test_onnxrt_cpu_latency_record() -> None:
    record = measure_latency(Tiny(), FAST.updated(runtime="onnxrt-cpu"))
    assert record.protocol.runtime == "onnxrt-cpu" and record.median_ms > 0
    with pytest.raises(ValueError, match="runtime: 'onnxrt-cuda' needs the CUDAExecutionProvider"):
        measure_latency(Tiny(), FAST.updated(runtime="onnxrt-cuda"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_latency_and_throughput() -> None:
    record = measure_latency(Tiny(), FAST.updated(device="cuda"))
    assert record.protocol.device.startswith("cuda")
    assert record.peak_memory_source == "cuda_max_allocated" and record.peak_memory_bytes > 0
    throughput = measure_throughput(Tiny(), FAST.updated(device="cuda", batch=8, dtype="bf16"))
    assert throughput.protocol.batch == 8 and throughput.images_per_s > 0


# --------------------------------------------------------------------------- calibration


def test_calibrated_samples_rescale_by_the_neighbouring_reference_times() -> None:
    # two models, two rounds: references r0 a r1 b r2 | a r3 b r4 (every reference pass follows a model pass)
    reference = [10.0, 20.0, 10.0, 5.0, 15.0]
    a = calibrated_samples([100.0, 50.0], reference, reference_ms=10.0, models=2, index=0)
    b = calibrated_samples([30.0, 60.0], reference, reference_ms=10.0, models=2, index=1)
    assert a == pytest.approx([100.0 * 10 / 15, 50.0 * 10 / 7.5])
    assert b == pytest.approx([30.0 * 10 / 15, 60.0 * 10 / 10])
    with pytest.raises(ValueError, match="reference: expected 5 reference times, got 4"):
        calibrated_samples([1.0, 2.0], reference[:4], 10.0, 2, 0)


def test_calibrate_is_a_record_and_leaves_global_state_alone() -> None:
    rng = torch.random.get_rng_state()
    threads = torch.get_num_threads()
    cal = calibrate(threads=1, warmup=1, repeats=5)
    assert torch.equal(torch.random.get_rng_state(), rng) and torch.get_num_threads() == threads
    assert isinstance(cal, Calibration) and cal.reference == "convnet112-v1"
    assert cal.reference_ms > 0 and (cal.threads, cal.clock, cal.repeats) == (1, "wall", 5)
    assert cal.torch_version == torch.__version__ and cal.device_name
    assert Calibration.model_validate_json(cal.model_dump_json()) == cal
    assert cal.label() == f"convnet112-v1={cal.reference_ms:.3f}ms"


def test_calibrated_rounds_sandwich_every_model_between_reference_runs(monkeypatch) -> None:
    import archspace.measure.latency.timing as latency

    log: list[str] = []
    real = latency.reference_workload

    def logged_reference():
        run = real()
        return lambda: (log.append("ref"), run())

    monkeypatch.setattr(latency, "reference_workload", logged_reference)
    cal = Calibration(reference_ms=1.0, threads=1, repeats=1, device_name="test", torch_version=torch.__version__)
    records = measure_latencies({"a": Tiny("a", log), "b": Tiny("b", log)}, FAST.updated(warmup=0), calibration=cal)
    # after the reference's own warm-up: an untimed pass of the last model, then every reference run follows a
    # model run (a reference right after another one runs warm and would inflate the model after it)
    assert log[-(4 * 3 + 2):] == ["b", "ref"] + ["a", "ref", "b", "ref"] * 3
    assert log[-(4 * 3 + 3)] == "ref"
    for record in records.values():
        assert record.protocol.calibration == cal
        assert record.raw_median_ms > 0 and record.machine_speed > 0
        # reference_ms=1 ms is far below a real pass of the reference, so calibrated < raw
        assert record.median_ms < record.raw_median_ms
    uncalibrated = measure_latency(Tiny(), FAST.updated(warmup=0))
    assert uncalibrated.raw_median_ms is None and uncalibrated.machine_speed is None
    table = compare([records["a"], uncalibrated])
    assert "calibration" in table.differing and "raw_median_ms" in table.rows[0]
    assert table.render().startswith("WARNING: protocols differ in calibration (convnet112-v1=1.000ms / None)")


def test_calibration_must_match_the_protocol() -> None:
    cal = Calibration(reference_ms=5.0, threads=2, repeats=1, device_name="test", torch_version=torch.__version__)
    with pytest.raises(ValueError, match="calibration: measured with threads=2"):
        measure_latency(Tiny(), FAST.updated(threads=1), calibration=cal)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only rule without CUDA")
def test_calibration_is_cpu_only() -> None:
    cal = Calibration(reference_ms=5.0, threads=1, repeats=1, device_name="test", torch_version=torch.__version__)
    with pytest.raises(ValueError, match="device: 'cuda' requested"):
        measure_latency(Tiny(), FAST.updated(device="cuda"), calibration=cal)


def test_load_or_calibrate_reuses_what_fits_else_measures(monkeypatch) -> None:
    import archspace.measure.latency.calibration as calibration

    measured: list[tuple[int, str]] = []

    def fake_calibrate(*, threads: int = 1, clock: str = "wall", **_) -> Calibration:
        measured.append((threads, clock))
        return Calibration(reference_ms=7.0, threads=threads, clock=clock, repeats=1, device_name="new",
                           torch_version=torch.__version__)

    monkeypatch.setattr(calibration, "calibrate", fake_calibrate)
    stored = Calibration(reference_ms=5.0, threads=1, repeats=1, device_name="old", torch_version=torch.__version__)
    for form in (stored, stored.model_dump(mode="json"), stored.model_dump_json()):  # a record, a dict or JSON
        assert load_or_calibrate(LatencySettings(), form) == stored
    assert measured == []
    assert load_or_calibrate(LatencySettings(threads=2), stored).device_name == "new"  # other threads
    assert load_or_calibrate(LatencySettings(clock="thread"), stored).clock == "thread"  # other clock
    assert load_or_calibrate(LatencySettings(threads=3), None).threads == 3  # nothing stored
    assert measured == [(2, "wall"), (1, "thread"), (3, "wall")]
    assert load_or_calibrate(LatencySettings(device="cuda"), stored) is None  # only CPU latency is calibrated
    assert len(measured) == 3


FAULTS = """
import resource, sys, torch
from archspace.measure import retain_freed_memory
if sys.argv[1] == "retain":
    assert retain_freed_memory()
torch.set_num_threads(1)
net = torch.nn.Sequential(torch.nn.Conv2d(3, 64, 3, padding=1), torch.nn.GELU(), torch.nn.Conv2d(64, 256, 1),
                          torch.nn.GELU(), torch.nn.Conv2d(256, 64, 1))
x = torch.randn(1, 3, 96, 96)  # 256 x 96 x 96 floats: 9 MiB activations, above glibc's default mmap threshold
with torch.inference_mode():
    for _ in range(3):
        net(x)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        net(x)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc allocator settings")
def test_retaining_freed_memory_removes_page_faults_from_timed_passes() -> None:
    def faults(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, check=True)
        return int(out.stdout.split()[-1])

    default, retained = faults("default"), faults("retain")
    assert default > 1000  # every pass maps its large activations back in
    assert retained < 50


def test_process_settings_are_explicit_and_recorded() -> None:
    """Measuring changes nothing process-wide by itself; apply_process_settings does, and records say so."""
    code = ("from archspace.measure import measure_latency, apply_process_settings; import torch; "
            "from archspace.measure import LatencySettings; "
            "m = torch.nn.Conv2d(3, 4, 3); s = LatencySettings(resolution=16, warmup=1, repeats=3); "
            "print(measure_latency(m, s).protocol.retain_freed_memory, apply_process_settings()['retain_freed_memory'], "
            "measure_latency(m, s).protocol.retain_freed_memory)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "True", "True"]
    record = measure_latency(Tiny(), FAST)
    assert record.protocol.omp_wait_policy == "PASSIVE"  # set by tests/conftest.py as archspace's commands do
