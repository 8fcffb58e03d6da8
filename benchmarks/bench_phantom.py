"""Benchmark of the digital phantom: generation and writing time per size preset (prints figures).

Run: PYTHONPATH=GadoReduce python benchmarks/bench_phantom.py [--full]
The first generation in a process also builds the seed-independent head base (cached afterwards).
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time

from GadoReduceLib.phantom import PhantomConfig, generate_phantom, write_phantom


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--full", action="store_true", help="also time the 1 mm 256x256x176 preset")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    presets = [("small", None), ("small", (1.0, 1.0, 3.0))] + ([("full", None)] if args.full else [])
    for size, spacing in presets:
        times = []
        for seed in range(args.repeats):
            start = time.perf_counter()
            case = generate_phantom(PhantomConfig(seed=seed, size=size, spacing_mm=spacing))
            times.append(time.perf_counter() - start)
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            write_phantom(case, folder)
            write_s = time.perf_counter() - start
        grid = case.parameters["grid"]
        print(f"{size:5s} spacing {grid['spacing_mm']} size {grid['size_ijk']}: generate "
              f"{', '.join(f'{t:.2f}' for t in times)} s (first includes the head base), write {write_s:.2f} s")
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(f"peak resident memory {peak_gb:.2f} GB")


if __name__ == "__main__":
    main()
