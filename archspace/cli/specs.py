"""Commands on specs and files: validate, build, presets, convert, schema, export."""
from __future__ import annotations

import argparse
from pathlib import Path

from ._out import UsageError, add_format, emit, rows


def cmd_validate(args: argparse.Namespace) -> int:
    from ..search.validate import describe, validate_file

    emit(args, validate_file(args.file), describe)
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from ..search.validate import spec_summary
    from ..spec.io import dump_spec, load_spec

    spec = load_spec(args.spec)
    if args.format == "yaml":
        print(dump_spec(spec), end="")
        return 0
    emit(args, spec_summary(spec), _summary_table)
    return 0


def _summary_table(d: dict) -> str:
    body = [[i + 1, s["width"], s["depth"], " ".join(f"{k}={v}" for k, v in s["counts"].items()), s["pattern"]]
            for i, s in enumerate(d["stages"])]
    head = (f"{d['name'] or '(unnamed)'}: {d['params']:,} params, {d['depth']} blocks, stem {d['stem']}, "
            f"stride {d['stride']}")
    return head + "\n" + rows(["stage", "width", "depth", "counts", "order"], body)


def cmd_presets(args: argparse.Namespace) -> int:
    from ..search.validate import spec_summary
    from ..spec.io import first_sentence, load_spec, preset_comment, preset_names

    out = []
    for name in preset_names():
        d = spec_summary(load_spec(name))
        out.append({"name": name, "params": d["params"], "depth": d["depth"],
                    "patterns": [s["pattern"] for s in d["stages"]], "about": preset_comment(name)})
    emit(args, out, lambda rs: rows(["preset", "params", "blocks", "about"],
                                    [[r["name"], f"{r['params']:,}", r["depth"], first_sentence(r["about"])] for r in rs]))
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from ..nn.checkpoint import convert_file
    from ..spec.io import load_spec

    d = convert_file(args.checkpoint, load_spec(args.spec), args.out)
    emit(args, d, lambda d: f"wrote {d['file']}: {d['tensors']} tensors, {d['values']:,} values")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    """The JSON Schema of a file kind: point an editor's YAML/JSON language server at it for completion."""
    import json

    from ..spec.io import json_schema

    if args.kind == "spec":
        from ..spec.net import NetSpec as model
    elif args.kind == "space":
        from ..search.space import Space as model
    else:
        from ..search.ablation import Ablation as model
    print(json.dumps(json_schema(model), indent=2))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from ..export import check_code, example_input, load_network, to_onnx, to_torchscript

    if not (args.onnx or args.torchscript or args.code):
        raise UsageError("export: give --onnx FILE, --torchscript FILE and/or --code FILE.py")
    if args.code and (not args.code.endswith(".py") or not Path(args.code).stem.isidentifier()):
        raise UsageError(f"--code: {args.code!r} must be a Python file name usable as a module (e.g. my_net.py)")
    if args.resolution < 8:
        raise UsageError("--resolution: must be at least 8")
    model = load_network(args.source, args.weights, args.num_classes)
    x = example_input(model, args.resolution)
    out = []
    if args.onnx:
        out.append({"file": args.onnx, "format": "onnx", "max_abs_diff": to_onnx(model, args.onnx, x)})
    if args.torchscript:
        out.append({"file": args.torchscript, "format": "torchscript", "max_abs_diff": to_torchscript(model, args.torchscript, x)})
    if args.code:
        out.append({"file": args.code, "format": "python", "max_abs_diff": check_code(args.source, args.code, model, x,
                                                                                      args.num_classes)})
    emit(args, out, lambda rs: "\n".join(f"{r['file']}: {r['format']}, max |logit - eager| {r['max_abs_diff']:.2e} "
                                         f"at {args.resolution} px" for r in rs))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("validate", help="check a spec, search-space or ablation file; one line for the first problem")
    s.add_argument("file", help="a spec, space or ablation YAML file (or a preset name)")
    add_format(s)
    s.set_defaults(func=cmd_validate)

    s = sub.add_parser("build", help="build a spec or preset and summarise it")
    s.add_argument("spec", help="spec file or preset name")
    add_format(s, "yaml")
    s.set_defaults(func=cmd_build)

    s = sub.add_parser("presets", help="list the shipped preset specs")
    add_format(s)
    s.set_defaults(func=cmd_presets)

    s = sub.add_parser("convert", help="map an official SMT/EfficientMod checkpoint onto archspace names")
    s.add_argument("checkpoint", help="the official checkpoint (.pth/.pt or .npz)")
    s.add_argument("--spec", required=True, help="spec file or preset name of the checkpoint's network")
    s.add_argument("--out", required=True, help="where the converted state dict goes (.pth, .pt or .npz)")
    add_format(s)
    s.set_defaults(func=cmd_convert)

    s = sub.add_parser("schema", help="print the JSON Schema of spec, space or ablation files (for editor completion)")
    s.add_argument("kind", choices=["spec", "space", "ablation"], help="which file kind")
    s.set_defaults(func=cmd_schema)

    s = sub.add_parser("export", help="write a spec, preset or Pareto YAML as ONNX, TorchScript or plain PyTorch code "
                                      "(each checked against eager)")
    s.add_argument("source", help="spec file, preset name or runs/<space>/pareto/*.yaml")
    s.add_argument("--weights", help="state dict to carry along (from training or 'archspace convert')")
    s.add_argument("--onnx", metavar="FILE", help="ONNX file (dynamic batch)")
    s.add_argument("--torchscript", metavar="FILE", help="TorchScript file")
    s.add_argument("--code", metavar="FILE.py", help="a standalone module that imports only torch (same state_dict keys)")
    s.add_argument("--resolution", type=int, default=224, help="input size the files are traced at")
    s.add_argument("--num-classes", type=int, help="classifier size (default: the spec's)")
    add_format(s)
    s.set_defaults(func=cmd_export)
