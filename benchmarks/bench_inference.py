"""The CNN's speed against the machine's convolution floor, runtime by runtime (issue 14).

For each model (``shipped``: Resources/Models/gadoreduce_default.pt; ``paper``: the paper configuration with random
weights) and volume size it prints, in one run and side by side:
- FLOPs per voxel of the forward pass (``torch.utils.flop_counter``);
- the floor: for every distinct dense convolution the inference pass runs (channels in/out, kernel; modules and
  ``F.conv3d`` calls alike, recorded by a TorchFunctionMode; the grouped blur left out) the GFLOP/s of that plain
  ``conv3d`` alone (fp32, channels_last_3d, on a slab of the volume, best of three), and the sum over the model's
  convolutions of FLOPs / that rate: the time the network's convolutions need at the speed the machine reaches;
- per runtime (``eager``: PyTorch fp32; ``channels_last``: PyTorch fp32 in channels_last_3d, GadoReduce's default
  on the CPU; ``compile``: ``torch.compile`` of it; ``onnxruntime``; ``openvino`` with f32 inference precision;
  ``bf16``: autocast, where the hardware has it) and mode (``whole`` volume or ``tiled``): seconds, peak resident
  memory, the ratio to the floor and the largest relative difference to PyTorch eager fp32.
Each (runtime, mode) runs in its own process so that its peak memory is its own; runtimes that are not installed
are listed as such. Prints figures only; no assertions. Usage:

  PYTHONPATH=GadoReduce python benchmarks/bench_inference.py [--models shipped,paper] [--sizes 155x240x240]
      [--runtimes eager,channels_last,compile,onnxruntime,openvino,bf16] [--modes whole,tiled,auto] [--tile 128]
      [--memory-limit GB] [--no-reference]
``auto``: GadoReduce's default, ``tile="auto"`` with the ``--memory-limit`` budget (e.g. 300x512x512 with
``--runtimes channels_last --modes auto --memory-limit 1.5 --no-reference``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "GadoReduce"))
RUNTIMES = ("eager", "channels_last", "compile", "onnxruntime", "openvino", "bf16")


def _model(name: str):
    import torch

    from GadoReduceLib.model.files import load_model
    from GadoReduceLib.model.network import ConditionalUNet, ConditionNormalization
    torch.manual_seed(0)
    if name == "paper":
        return ConditionalUNet().eval(), ConditionNormalization()
    loaded = load_model(None if name == "shipped" else name)
    return loaded.model.eval(), loaded.normalization


def _inputs(size, normalization):
    import numpy as np
    rng = np.random.default_rng(0)
    z = rng.standard_normal(size=size, dtype=np.float32)
    x = rng.standard_normal(size=size, dtype=np.float32)
    x *= 0.1
    x += 1.0
    s = np.full(size, 0.05, np.float32)
    return z, x, s, normalization.normalize(0.25, 3.0, 4.5, 0.03)


def _peak_gb() -> float:
    from GadoReduceLib.io.profiling import peak_memory_mb
    return peak_memory_mb() / 1024


def _padded(x, alignment):
    import torch.nn.functional as F
    pad = [(-n) % alignment for n in x.shape[2:]]
    return F.pad(x, (0, pad[2], 0, pad[1], 0, pad[0])) if any(pad) else x


def _export_runner(runtime: str, model, normalization, example):
    """A function (x [1, 3, D, H, W] padded to the alignment, c) -> y for ONNX Runtime or OpenVINO (fp32)."""
    import torch
    for p in model.parameters():
        p.requires_grad_(False)
    small = example[:, :, :2 * model.config.alignment, :2 * model.config.alignment, :2 * model.config.alignment]
    with torch.enable_grad():  # the plain, traceable path of the network (no inference-only slabs)
        traced = torch.jit.trace(model, (small.contiguous(), normalization), check_trace=False)
    if runtime == "openvino":
        import openvino as ov
        compiled = ov.Core().compile_model(ov.convert_model(traced), "CPU",
                                           {"INFERENCE_PRECISION_HINT": "f32",
                                            "INFERENCE_NUM_THREADS": torch.get_num_threads()})
        return lambda x, c: torch.from_numpy(compiled([x.numpy(), c.numpy()])[0])
    import onnxruntime as ort
    path = Path(tempfile.mkdtemp()) / "model.onnx"
    with torch.enable_grad():
        torch.onnx.export(model, (small.contiguous(), normalization), str(path), dynamo=False, opset_version=17,
                          input_names=["x", "c"], output_names=["y"], dynamic_axes={"x": {2: "d", 3: "h", 4: "w"}})
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda x, c: torch.from_numpy(session.run(None, {"x": x.numpy(), "c": c.numpy()})[0])


def _one(model_name: str, size, runtime: str, mode: str, tile: int, reference: str | None,
         memory_limit_gb: float | None = None) -> dict:
    import numpy as np
    import torch

    from GadoReduceLib.inference import predict
    from GadoReduceLib.io.memory import large_arrays
    from GadoReduceLib.model.network import input_tensor
    model, normalization = _model(model_name)
    z, x, s, c = _inputs(size, normalization)
    tile_arg = {"tiled": tile, "auto": "auto"}.get(mode)
    if mode == "auto" and runtime not in ("eager", "channels_last", "bf16"):
        raise SystemExit("mode auto is GadoReduce's own tiler: PyTorch runtimes only")
    with large_arrays():
        start = time.perf_counter()
        if runtime in ("eager", "channels_last", "bf16"):
            if runtime == "eager":  # the plain default memory format
                predict.channels_last = lambda device, precision: False
            budget = None if memory_limit_gb is None else memory_limit_gb * 2 ** 30
            y = predict.predict_contrast(model, z, x, s, c, tile=tile_arg,
                                         overlap=tile // 4 if mode == "tiled" else None,
                                         precision="bf16" if runtime == "bf16" else "fp32", device="cpu",
                                         memory_budget=budget)
        else:
            example = input_tensor(z, x, s)
            if runtime == "compile":
                model = model.to(memory_format=torch.channels_last_3d)
                compiled = torch.compile(model)
                run = lambda t, cond: compiled(t.contiguous(memory_format=torch.channels_last_3d), cond)  # noqa: E731
            else:
                run = _export_runner(runtime, model, c, _padded(example, model.config.alignment))
            def infer():
                with torch.no_grad():
                    if tile_arg is None:
                        return run(_padded(example, model.config.alignment), c)[0, 0, :size[0], :size[1],
                                                                                 :size[2]].numpy()
                    # the same tiler, with this runtime behind it
                    predict._run = lambda m, t, cond, dev, prec: run(_padded(t, m.config.alignment), cond)[
                        0, 0, :t.shape[2], :t.shape[3], :t.shape[4]]
                    return predict._predict_tiled(model, [z, x, s], c, tile, tile // 4, "fp32", torch.device("cpu"),
                                                  False)
            if runtime == "compile":
                infer()  # torch.compile compiles at the first call: that is its preparation
            prepared = time.perf_counter() - start
            start = time.perf_counter()
            y = infer()
        seconds = time.perf_counter() - start
    out = {"seconds": seconds, "peak_gb": _peak_gb(), "threads": torch.get_num_threads()}
    if mode == "auto":
        out["tile"] = predict.auto_tile(size, model.config, torch.device("cpu"),
                                        None if memory_limit_gb is None else memory_limit_gb * 2 ** 30)
    if runtime in ("compile", "onnxruntime", "openvino"):
        out["prepare_s"] = prepared
    if reference is None:
        pass
    elif Path(reference).exists():
        ref = np.load(reference)
        out["max_rel_diff"] = float(np.abs(y - ref).max() / max(np.abs(ref).max(), 1e-12))
    else:
        np.save(reference, y)
    return out


def flops_per_voxel(model, size) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    x = torch.zeros((1, 3) + tuple(size))
    c = torch.zeros(1, 4)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x, c)
    return counter.get_total_flops() / x[0, 0].numel()


def _convolutions(model, size) -> list[tuple]:
    """(in channels, out channels, kernel, groups, stride, padding, input shape, output shape) of every conv3d
    the inference forward pass runs, whether through an ``nn.Conv3d`` module or ``F.conv3d`` on its weights (the
    folded condition bias, the split fusion weights)."""
    import torch
    import torch.nn.functional as F
    from torch.overrides import TorchFunctionMode
    calls = []

    class Record(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if func in (F.conv3d, torch.conv3d):
                values = dict(zip(("input", "weight", "bias", "stride", "padding", "dilation", "groups"), args))
                values.update(kwargs or {})
                weight, groups = values["weight"], int(values.get("groups", 1))
                stride, padding = values.get("stride", 1), values.get("padding", 0)
                stride = stride[0] if isinstance(stride, (tuple, list)) else stride
                padding = padding[0] if isinstance(padding, (tuple, list)) else padding
                calls.append((weight.shape[1] * groups, weight.shape[0], weight.shape[2], groups, int(stride),
                              int(padding), tuple(values["input"].shape), tuple(out.shape)))
            return out

    with torch.no_grad(), Record():
        model(torch.zeros((1, 3) + tuple(size)), torch.zeros(1, 4))
    return calls


def convolution_floor(model, size) -> tuple[float, float]:
    """(seconds, mean GFLOP/s): the model's dense convolutions (grouped ones, the blur, excluded as before) at the
    speed of each plain conv3d alone (see docstring); each rate is the best of three timed runs."""
    import torch
    import torch.nn.functional as F
    rates, total_s, total_flops = {}, 0.0, 0.0
    for cin, cout, k, groups, stride, padding, shape_in, shape_out in _convolutions(model, size):
        if groups != 1:
            continue
        flops = 2.0 * cin * cout * k ** 3 * torch.Size(shape_out[2:]).numel()
        key = (cin, cout, k, stride, shape_in[3:])
        if key not in rates:
            depth = max(4, min(shape_in[2], int(2e6 // max(torch.Size(shape_in[3:]).numel(), 1))))
            x = torch.randn(1, cin, depth, *shape_in[3:]).contiguous(memory_format=torch.channels_last_3d)
            w = torch.randn(cout, cin, k, k, k).contiguous(memory_format=torch.channels_last_3d)
            seconds = []
            with torch.no_grad():
                F.conv3d(x, w, None, stride, padding)
                for _ in range(3):
                    start = time.perf_counter()
                    out = F.conv3d(x, w, None, stride, padding)
                    seconds.append(time.perf_counter() - start)
            rates[key] = 2.0 * cin * cout * k ** 3 * out[0, 0].numel() / min(seconds)
        total_s += flops / rates[key]
        total_flops += flops
    return total_s, total_flops / total_s / 1e9


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="shipped,paper")
    p.add_argument("--sizes", default="155x240x240", help="k x j x i sizes, comma separated")
    p.add_argument("--runtimes", default=",".join(RUNTIMES))
    p.add_argument("--modes", default="whole,tiled")
    p.add_argument("--tile", type=int, default=128)
    p.add_argument("--memory-limit", type=float, metavar="GB", help="mode auto: the network's memory budget "
                   "(default: GadoReduce's, a share of the free memory)")
    p.add_argument("--no-reference", action="store_true", help="skip the eager fp32 reference (large volumes)")
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--reference", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        model, size, runtime, mode = args.one.split(":")
        print(json.dumps(_one(model, tuple(int(v) for v in size.split("x")), runtime, mode, args.tile,
                              args.reference, args.memory_limit)))
        return

    import torch

    from GadoReduceLib.inference.predict import native_bf16
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               "?") if os.path.exists("/proc/cpuinfo") else "?"
    print(f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"native bf16: {native_bf16(torch.device('cpu'))}")
    work = Path(tempfile.mkdtemp())
    for model_name in args.models.split(","):
        model, _ = _model(model_name)
        for size_text in args.sizes.split(","):
            size = tuple(int(v) for v in size_text.split("x"))
            fpv = flops_per_voxel(model, (32, 32, 32))
            floor_s, rate = convolution_floor(model, size)
            print(f"\n{model_name} ({sum(p.numel() for p in model.parameters()):,} parameters), {size_text}: "
                  f"{fpv / 1e6:.3f} MFLOP/voxel, {fpv * torch.Size(size).numel() / 1e12:.2f} TFLOP; convolution "
                  f"floor {floor_s:.1f} s (plain conv3d at {rate:.0f} GFLOP/s on average)")
            print("| runtime | mode | seconds | peak GB | ratio to floor | max rel. diff to eager fp32 | note |")
            print("|---|---|---|---|---|---|---|")
            reference = work / f"{model_name}-{size_text}.npy"
            runtimes = [r for r in args.runtimes.split(",") if r != "eager"]
            for runtime in (runtimes if args.no_reference else ["eager"] + runtimes):
                if runtime == "bf16" and not native_bf16(torch.device("cpu")):
                    print("| bf16 | - | - | - | - | - | emulated on this processor: skipped |")
                    continue
                for mode in args.modes.split(","):
                    cmd = [sys.executable, __file__, "--one", f"{model_name}:{size_text}:{runtime}:{mode}",
                           "--tile", str(args.tile)]
                    cmd += [] if args.no_reference else ["--reference", str(reference.with_suffix(f".{mode}.npy"))]
                    cmd += ["--memory-limit", str(args.memory_limit)] if args.memory_limit else []
                    done = subprocess.run(cmd, capture_output=True, text=True)
                    if done.returncode != 0:
                        last = (done.stderr.strip().splitlines() or ["?"])[-1][:120]
                        print(f"| {runtime} | {mode} | - | - | - | - | failed or not installed: {last} |", flush=True)
                        continue
                    r = json.loads(done.stdout.strip().splitlines()[-1])
                    note = f"preparation {r['prepare_s']:.1f} s" if "prepare_s" in r else ""
                    note += f"auto tile {r['tile']}" if mode == "auto" else ""
                    diff = (f"{r['max_rel_diff']:.1e}" if "max_rel_diff" in r else
                            "-" if args.no_reference else "(reference)")
                    label = f"tiled {args.tile}" if mode == "tiled" else mode
                    print(f"| {runtime} | {label} | {r['seconds']:.1f} | {r['peak_gb']:.2f} | "
                          f"{r['seconds'] / floor_s:.2f} | {diff} | {note} |", flush=True)


if __name__ == "__main__":
    main()
