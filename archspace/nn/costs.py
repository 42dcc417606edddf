"""Cost primitives of the analytic complexity: parameters and MACs per convention, per layer (no torch).

They sit beside the layers they count (``archspace.nn.layers``), below the blocks that use them. Block kinds (``archspace.blocks``) add these up for their modules; ``archspace.measure.complexity``
adds up the blocks. The conventions are described in :mod:`archspace.measure.complexity`.
"""
from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Cost:
    """Parameters and MACs per convention."""

    params: int = 0
    smt_paper: int = 0
    fvcore: int = 0
    full: int = 0

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def as_dict(self) -> dict[str, int]:
        """{'params': ..., 'smt-paper': ..., 'fvcore': ..., 'full': ...}."""
        return {"params": self.params, "smt-paper": self.smt_paper, "fvcore": self.fvcore, "full": self.full}


def linear(n: int, cin: int, cout: int, bias: bool = True) -> Cost:
    """Linear layer on n tokens."""
    macs = n * cin * cout
    b = cout if bias else 0
    return Cost(cin * cout + b, macs + n * b, macs, macs + n * b)


def conv(h: int, w: int, cin: int, cout: int, k: int, stride: int = 1, pad: int = 0, groups: int = 1,
         bias: bool = True) -> tuple[Cost, int, int]:
    """Conv2d on an h x w map; returns the cost and the output size."""
    ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    per = cin // groups * k * k
    out = ho * wo * cout
    b = cout if bias else 0
    return Cost(cout * per + b, out * per + (out if bias else 0), out * per, out * per + (out if bias else 0)), ho, wo


def layernorm(n: int, c: int) -> Cost:
    """LayerNorm over c channels on n tokens."""
    return Cost(2 * c, 0, 5 * n * c, 0)


def batchnorm(n: int, c: int) -> Cost:
    """BatchNorm (eval) on c channels at n positions."""
    return Cost(2 * c, 0, 2 * n * c, 0)


def attention(n: int, heads: int, head_dim: int) -> Cost:
    """Softmax attention matmuls: q k^T and attn v."""
    macs = 2 * heads * n * n * head_dim
    return Cost(0, 0, macs, macs)


def elementwise(numel: int) -> Cost:
    """An elementwise product (counted only in 'full')."""
    return Cost(0, 0, 0, numel)


def layer_scale(n: int, c: int, init) -> Cost:
    """A layer-scale vector (when ``init`` is set): c parameters, one product per element in 'full'."""
    return Cost(c, 0, 0, n * c) if init is not None else Cost()


def detail_ffn(n: int, h: int, w: int, c: int, hidden: int) -> Cost:
    """SMT's detail-specific FFN: fc1, depth-wise 3x3 on the hidden map, fc2."""
    dw, _, _ = conv(h, w, hidden, hidden, 3, pad=1, groups=hidden)
    return linear(n, c, hidden) + dw + linear(n, hidden, c)
