"""Specs from the official constructors' keyword arguments (AFeng-x/SMT ``SMT``, ma-xu/EfficientMod ``EfficientMod``)."""
from __future__ import annotations

from typing import Any, Optional

from .errors import SpecError
from .io import spec_from_dict
from .net import NetSpec

SMT_DEFAULTS: dict[str, Any] = dict(
    img_size=224, in_chans=3, num_classes=1000, embed_dims=[64, 128, 256, 512], ca_num_heads=[4, 4, 4, -1],
    sa_num_heads=[-1, -1, 8, 16], mlp_ratios=[8, 6, 4, 2], qkv_bias=False, qk_scale=None, use_layerscale=False,
    layerscale_value=1e-4, drop_rate=0.0, attn_drop_rate=0.0, drop_path_rate=0.0, norm_layer=None,
    depths=[2, 2, 8, 1], ca_attentions=[1, 1, 1, 0], num_stages=4, head_conv=3, expand_ratio=2,
)

EFFMOD_DEFAULTS: dict[str, Any] = dict(
    in_chans=3, num_classes=1000, patch_size=[4, 3, 3, 3], patch_stride=[4, 2, 2, 2], patch_pad=[0, 1, 1, 1],
    patch_norm=True, embed_dim=[64, 128, 256, 512], depths=[2, 2, 6, 2], attention_depth=[0, 0, 0, 0],
    mlp_ratio=[4, 4, 4, 4], att_ratio=[4, 4, 4, 4], conv_in_mlp=[True, True, True, True], use_layerscale=False,
    layerscale_value=1e-4, bias=True, drop_rate=0.0, drop_path_rate=0.0, conv_group_dim=[4, 4, 4, 4],
    context_size=[3, 3, 3, 3], norm_layer=None, act_layer=None, context_act=None, context_f=True, context_g=True,
    attn_num_heads=8,
)


def _refuse(arg: str, value: Any, why: str) -> SpecError:
    return SpecError(f"{arg}: {value!r} cannot be represented ({why})")


def _per_stage(arg: str, value: Any, n: int = 4) -> list:
    if not isinstance(value, (list, tuple)) or len(value) != n:
        raise SpecError(f"{arg}: expected a list of {n} per-stage values, got {value!r}")
    return list(value)


def _merge(family: str, defaults: dict, kwargs: dict) -> dict:
    unknown = sorted(set(kwargs) - set(defaults))
    if unknown:
        raise SpecError(f"{unknown[0]}: not an argument of the official {family} constructor (known: {', '.join(sorted(defaults))})")
    return {**defaults, **kwargs}


def _smt(name: Optional[str], kw: dict) -> dict:
    a = _merge("SMT", SMT_DEFAULTS, kw)
    if a["num_stages"] != 4:
        raise _refuse("num_stages", a["num_stages"], "the official SMT head reads embed_dims[3]; only 4 stages exist")
    for arg in ("qk_scale",):
        if a[arg] is not None:
            raise _refuse(arg, a[arg], "archspace attention always scales by head_dim**-0.5; leave it None")
    for arg in ("drop_rate", "attn_drop_rate"):
        if a[arg]:
            raise _refuse(arg, a[arg], "dropout inside blocks is not part of the spec; use 0")
    if a["norm_layer"] is not None:
        raise _refuse("norm_layer", a["norm_layer"], "blocks use LayerNorm(eps=1e-6) as in the official builders")
    if a["head_conv"] not in (3, 7):
        raise _refuse("head_conv", a["head_conv"], "the official stem supports 3 or 7")
    dims = _per_stage("embed_dims", a["embed_dims"])
    depths = _per_stage("depths", a["depths"])
    ca_heads = _per_stage("ca_num_heads", a["ca_num_heads"])
    sa_heads = _per_stage("sa_num_heads", a["sa_num_heads"])
    mlp = _per_stage("mlp_ratios", a["mlp_ratios"])
    ca_att = _per_stage("ca_attentions", a["ca_attentions"])
    ls = a["layerscale_value"] if a["use_layerscale"] else None
    stages = []
    for i in range(4):
        blocks = []
        for j in range(depths[i]):
            sam = 0 if (i == 2 and j % 2 != 0) else ca_att[i]
            common = dict(mlp_ratio=float(mlp[i]), qkv_bias=bool(a["qkv_bias"]), layer_scale=ls, norm_eps=1e-6)
            if sam == 1:
                if ca_heads[i] is None or ca_heads[i] < 1:
                    raise SpecError(f"ca_num_heads[{i}]: {ca_heads[i]} heads for a SAM block in stage {i + 1} (use >= 1)")
                blocks.append(dict(kind="sam", heads=ca_heads[i], aggregation="saa", expand_ratio=a["expand_ratio"], **common))
            else:
                if sa_heads[i] is None or sa_heads[i] < 1:
                    raise SpecError(f"sa_num_heads[{i}]: {sa_heads[i]} heads for an MSA block in stage {i + 1} (use >= 1)")
                blocks.append(dict(kind="msa", heads=sa_heads[i], **common))
        stage = dict(width=dims[i], blocks=blocks, norm_eps=1e-6)
        if i > 0:
            stage["downsample"] = dict(kernel_size=3, stride=2, norm_eps=1e-5)
        stages.append(stage)
    return dict(
        name=name, in_chans=a["in_chans"], num_classes=a["num_classes"],
        stem=dict(kind="smt", kernel_size=a["head_conv"], norm_eps=1e-5), stages=stages,
        head=dict(pool="mean"), drop_path_rate=float(a["drop_path_rate"]),
    )


def _effmod(name: Optional[str], kw: dict) -> dict:
    a = _merge("EfficientMod", EFFMOD_DEFAULTS, kw)
    for arg in ("norm_layer", "act_layer", "context_act"):
        if a[arg] is not None:
            raise _refuse(arg, a[arg], "the spec uses LayerNorm(eps=1e-5) and GELU as in the official builders")
    if not a["patch_norm"]:
        raise _refuse("patch_norm", False, "patch embeddings always end in LayerNorm")
    if not a["bias"]:
        raise _refuse("bias", False, "EfficientMod linears and convs carry bias")
    if a["drop_rate"]:
        raise _refuse("drop_rate", a["drop_rate"], "dropout inside blocks is not part of the spec; use 0")
    if not (a["context_f"] and a["context_g"]):
        raise _refuse("context_f/context_g", False, "the EfficientMod block always has f and g")
    if a["attn_num_heads"] != 8:
        raise _refuse("attn_num_heads", a["attn_num_heads"], "the official attention block always uses 8 heads")
    dims = _per_stage("embed_dim", a["embed_dim"])
    depths = _per_stage("depths", a["depths"])
    att_depth = _per_stage("attention_depth", a["attention_depth"])
    ratios = _per_stage("mlp_ratio", a["mlp_ratio"])
    att_ratio = _per_stage("att_ratio", a["att_ratio"])
    groups = _per_stage("conv_group_dim", a["conv_group_dim"])
    ctx = _per_stage("context_size", a["context_size"])
    conv_in_mlp = _per_stage("conv_in_mlp", a["conv_in_mlp"])
    psize, pstride, ppad = (_per_stage(k, a[k]) for k in ("patch_size", "patch_stride", "patch_pad"))
    ls = a["layerscale_value"] if a["use_layerscale"] else None

    def pick(arg: str, value: Any, i: int, j: int) -> Any:
        if isinstance(value, (list, tuple)):
            if j >= len(value):
                raise SpecError(f"{arg}[{i}]: {len(value)} values for {depths[i]} blocks (give one per block)")
            value = value[j]
        if isinstance(value, (list, tuple)):
            if len(value) != 1:
                raise _refuse(f"{arg}[{i}][{j}]", value, "one context kernel per block is supported")
            value = value[0]
        return value

    stages = []
    for i in range(4):
        if not conv_in_mlp[i] and depths[i]:
            raise _refuse(f"conv_in_mlp[{i}]", False, "blocks without the context branch are not EfficientMod blocks")
        blocks = []
        for j in range(depths[i]):
            r = pick("mlp_ratio", ratios[i], i, j)
            g = pick("conv_group_dim", groups[i], i, j)
            k = pick("context_size", ctx[i], i, j)
            if r != int(r) or int(r) < 1:
                raise _refuse(f"mlp_ratio[{i}][{j}]", r, "the value branch tiles the context r times; use an integer >= 1")
            if g != r:
                raise _refuse(f"conv_group_dim[{i}][{j}]", g, f"the context width must equal the block width (set it to mlp_ratio {r})")
            blocks.append(dict(kind="effmod", mlp_ratio=int(r), kernel_size=int(k), layer_scale=ls, norm_eps=1e-5))
        for _ in range(att_depth[i]):
            if not att_ratio[i] or att_ratio[i] <= 0:
                raise SpecError(f"att_ratio[{i}]: {att_ratio[i]} for a stage with attention blocks (use > 0)")
            blocks.append(dict(kind="vit", heads=8, min_head_dim=32, qkv_bias=False,
                               mlp_ratio=float(att_ratio[i]), layer_scale=None, norm_eps=1e-5))
        if not blocks:
            raise SpecError(f"depths[{i}]: stage {i + 1} has no blocks (use depths and attention_depth >= 1 in total)")
        stage: dict[str, Any] = dict(width=dims[i], blocks=blocks, norm_eps=1e-5 if i == 3 else None)
        if i > 0:
            stage["downsample"] = dict(kernel_size=psize[i], stride=pstride[i], padding=ppad[i], norm_eps=1e-5)
        stages.append(stage)
    return dict(
        name=name, in_chans=a["in_chans"], num_classes=a["num_classes"],
        stem=dict(kind="effmod", kernel_size=psize[0], stride=pstride[0], padding=ppad[0], norm_eps=1e-5),
        stages=stages, head=dict(pool="avgpool"), drop_path_rate=float(a["drop_path_rate"]),
    )


def spec_from_official(family: str, name: Optional[str] = None, **kwargs: Any) -> NetSpec:
    """The spec of the official ``SMT(**kwargs)`` (family "smt") or ``EfficientMod(**kwargs)`` (family "efficientmod")."""
    fam = family.lower().replace("-", "").replace("_", "")
    if fam == "smt":
        data = _smt(name, kwargs)
    elif fam == "efficientmod":
        data = _effmod(name, kwargs)
    else:
        raise SpecError(f"family: {family!r} is not known (use 'smt' or 'efficientmod')")
    return spec_from_dict(data, f"spec_from_official({family!r})")


SMT_T_ARGS: dict[str, Any] = dict(
    embed_dims=[64, 128, 256, 512], ca_num_heads=[4, 4, 4, -1], sa_num_heads=[-1, -1, 8, 16],
    mlp_ratios=[4, 4, 4, 2], qkv_bias=True, depths=[2, 2, 8, 1], ca_attentions=[1, 1, 1, 0],
    head_conv=3, expand_ratio=2,
)
STAGE3_PATTERNS = {"alt": "alternate", "half": "half", "sam": "sam", "msa": "msa"}


def smt_variant(
    name: Optional[str] = None,
    *,
    aggregation: Optional[str] = None,
    split: Optional[str] = None,
    stage3_pattern: Optional[str] = None,
    kernel_sizes: Optional[list[int]] = None,
    **official: Any,
) -> NetSpec:
    """SMT-T (or any official SMT arguments) with the paper's ablation knobs: aggregation, uneven split, stage-3 stacking, MHMC kernels."""
    args = {**SMT_T_ARGS, **official}
    data = _smt(name, args)
    stage3 = data["stages"][2]["blocks"]
    if stage3_pattern is not None:
        if stage3_pattern not in STAGE3_PATTERNS:
            raise SpecError(f"stage3_pattern: {stage3_pattern!r} is not known (use one of {list(STAGE3_PATTERNS)})")
        ca, sa = args["ca_num_heads"][2], args["sa_num_heads"][2]
        common = {k: stage3[0][k] for k in ("mlp_ratio", "qkv_bias", "layer_scale", "norm_eps")}
        sam = dict(kind="sam", heads=ca, aggregation="saa", expand_ratio=args["expand_ratio"], **common)
        msa = dict(kind="msa", heads=sa, **common)
        depth = len(stage3)
        if stage3_pattern in ("sam", "msa"):
            kinds = [stage3_pattern] * depth
        else:
            from .stacking import expand
            kinds = expand(STAGE3_PATTERNS[stage3_pattern], kinds=["sam", "msa"], depth=depth)
        data["stages"][2]["blocks"] = [dict(sam if k == "sam" else msa) for k in kinds]
    for stage in data["stages"]:
        for block in stage["blocks"]:
            if block["kind"] != "sam":
                continue
            if aggregation is not None:
                block["aggregation"] = aggregation
            if split is not None:
                block["split"] = split
            if kernel_sizes is not None:
                block["kernel_sizes"] = list(kernel_sizes)
    return spec_from_dict(data, "smt_variant")


def smt_variant_from_delta(delta: dict, name: Optional[str] = None) -> NetSpec:
    """SMT-T changed by a reference ``cfg_delta`` (keys ca_num_heads, ca_attentions, agg, split, stage3_pattern, kernel_sizes)."""
    delta = dict(delta)
    knobs = {"agg": "aggregation", "split": "split", "stage3_pattern": "stage3_pattern", "kernel_sizes": "kernel_sizes"}
    kw = {knobs[k]: delta.pop(k) for k in list(delta) if k in knobs}
    return smt_variant(name, **kw, **delta)
