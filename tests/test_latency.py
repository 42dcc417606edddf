"""Latency records: protocol fields, no global side effects, interleaving, comparison. No timing asserts."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from torch import nn

from archspace.measure import (
    LatencyProtocol,
    LatencyRecord,
    compare,
    measure_latencies,
    measure_latency,
    measure_throughput,
)

FAST = {"resolution": 16, "warmup": 1, "repeats": 3}


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
    record = measure_latency(Tiny(), name="tiny", batch=2, **FAST)
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
    wall = measure_latency(Tiny(), name="wall", **FAST)
    thread = measure_latency(Tiny(), name="thread", clock="thread", **FAST)
    assert (wall.protocol.clock, thread.protocol.clock) == ("wall", "thread")
    assert thread.median_ms >= 0  # CPU-time clocks can be coarse on some platforms
    assert compare([wall, thread]).differing == {"clock": ["wall", "thread"]}


def test_threads_pinned_then_restored() -> None:
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        model = Tiny()
        measure_latency(model, threads=1, **FAST)
        assert set(model.threads_seen) == {1}
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)


def test_model_untouched() -> None:
    model = Tiny().train()
    record = measure_latency(model, dtype="bf16", channels_last=True, **FAST)
    assert record.protocol.dtype == "bf16" and record.protocol.channels_last
    assert all(m.training for m in model.modules())
    assert model.conv.weight.dtype == torch.float32
    assert model.conv.weight.is_contiguous()


def test_eval_mode_restored_when_no_copy_needed() -> None:
    model = Tiny().train()
    measure_latency(model, **FAST)
    assert all(m.training for m in model.modules())


def test_repeats_interleaved_round_robin() -> None:
    log: list[str] = []
    records = measure_latencies({"a": Tiny("a", log), "b": Tiny("b", log)}, **FAST)
    assert log == ["a", "b"] + ["a", "b"] * 3  # warm-up per model, then a, b, a, b, ...
    assert set(records) == {"a", "b"}
    assert records["a"].protocol == records["b"].protocol
    assert records["a"].interleaved_with == 2


def test_compare_same_protocol() -> None:
    records = measure_latencies({"a": Tiny(), "b": Tiny()}, **FAST)
    table = compare(records, strict=True)
    assert table.comparable and table.differing == {}
    assert [row["name"] for row in table.rows] == ["a", "b"]
    assert table.rows[0]["vs_first"] == 1.0
    assert "WARNING" not in table.render()


def test_compare_flags_differing_protocols() -> None:
    fp32 = measure_latency(Tiny(), name="fp32", **FAST)
    bf16 = measure_latency(Tiny(), name="bf16", dtype="bf16", threads=2, **FAST)
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
    record = measure_throughput(OutOfMemoryAbove(limit=5), device="cpu", batch=16, **FAST)
    assert record.protocol.batch == 4 and record.batch_requested == 16
    with pytest.raises(torch.OutOfMemoryError):
        measure_throughput(OutOfMemoryAbove(limit=0), device="cpu", batch=4, **FAST)


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
    with pytest.raises(ValueError, match=message):
        measure_latency(Tiny(), **{**FAST, **kwargs})


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_cuda_without_cuda_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="device: 'cuda' requested but CUDA is not available"):
        measure_latency(Tiny(), device="cuda", **FAST)


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is not None, reason="onnxruntime installed")
def test_onnxrt_without_onnxruntime_names_the_install() -> None:
    with pytest.raises(ImportError, match="pip install onnxruntime"):
        measure_latency(Tiny(), runtime="onnxrt-cpu", **FAST)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_latency_and_throughput() -> None:
    record = measure_latency(Tiny(), device="cuda", **FAST)
    assert record.protocol.device.startswith("cuda")
    assert record.peak_memory_source == "cuda_max_allocated" and record.peak_memory_bytes > 0
    throughput = measure_throughput(Tiny(), device="cuda", batch=8, dtype="bf16", **FAST)
    assert throughput.protocol.batch == 8 and throughput.images_per_s > 0
