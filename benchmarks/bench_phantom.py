"""Benchmark of the digital phantom: time to generate one case (prints figures, asserts nothing).

Headline: one full case (1 mm, 256x256x176) with three low doses plus pre-contrast and standard dose,
median of ``--repeats`` seeds after a warm-up generation (the warm-up builds the seed-independent head
base, cached afterwards, and imports torch), and the process's peak resident memory after it.
Then the small presets (2 mm, and 1x1x3 mm with supersampling) and the time to write a case.

Run: PYTHONPATH=GadoReduce python benchmarks/bench_phantom.py [--repeats 3] [--profile]
The machine's load average is printed too: on a shared machine, other jobs slow every figure.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import resource
import statistics
import tempfile
import time

import SimpleITK as sitk
import torch

from GadoReduceLib.phantom.generate import PhantomConfig, generate_phantom, write_phantom

DOSES = (0.1, 0.2, 0.33)


def _time(config: PhantomConfig) -> tuple[float, object]:
    start = time.perf_counter()
    case = generate_phantom(config)
    return time.perf_counter() - start, case


def _peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="timed generations per preset (seeds 1..N)")
    parser.add_argument("--profile", action="store_true", help="also print the top functions of one full case")
    args = parser.parse_args()
    print(f"cores {os.cpu_count()}, torch threads {torch.get_num_threads()}, SimpleITK threads "
          f"{sitk.ProcessObject_GetGlobalDefaultNumberOfThreads()}, load average {os.getloadavg()[0]:.2f}")

    full = dict(size="full", doses=DOSES)
    warm_s, _ = _time(PhantomConfig(seed=0, **full))
    times = []
    for seed in range(1, args.repeats + 1):
        seconds, case = _time(PhantomConfig(seed=seed, **full))
        times.append(seconds)
    grid = case.parameters["grid"]
    print(f"HEADLINE full case {'x'.join(map(str, grid['size_ijk']))} at {grid['spacing_mm'][0]:g} mm, doses "
          f"{', '.join(f'{d:g}' for d in DOSES)} (+ pre-contrast, standard dose): median "
          f"{statistics.median(times):.2f} s (runs {', '.join(f'{t:.2f}' for t in times)}; warm-up {warm_s:.2f} s), "
          f"peak resident memory {_peak_gb():.2f} GB")
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        write_phantom(case, folder)
        print(f"write full case {time.perf_counter() - start:.2f} s")
    del case

    for spacing in (None, (1.0, 1.0, 3.0)):
        times = []
        for seed in range(1, args.repeats + 1):
            seconds, small = _time(PhantomConfig(seed=seed, spacing_mm=spacing))
            times.append(seconds)
        grid = small.parameters["grid"]
        print(f"small spacing {grid['spacing_mm']} size {grid['size_ijk']}, doses 0.1, 0.33: median "
              f"{statistics.median(times):.2f} s (runs {', '.join(f'{t:.2f}' for t in times)})")

    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        generate_phantom(PhantomConfig(seed=args.repeats + 1, **full))
        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
