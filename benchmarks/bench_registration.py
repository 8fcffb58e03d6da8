"""Time and registration error of each registration backend on a digital phantom.

Registers the phantom's low-dose scan (moved by a known rigid motion of up to 10 degrees and 10 mm)
to its pre-contrast scan with GadoReduce's rigid parameter file through itk-elastix and the elastix
executable, and with SimpleITK's own rigid registration as a reference. Prints seconds and the mean
and maximum target registration error over the brain. Synthetic data: figures for comparing methods.

    python benchmarks/bench_registration.py [--size full|small] [--seed 7] [--repeats 1]

``--size full`` is the 256x256x176 1 mm grid.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "GadoReduce"))

from GadoReduceLib.phantom.generate import PhantomConfig, generate_phantom  # noqa: E402
from GadoReduceLib.preprocessing.registration import RIGID_PARAMETER_FILE, register, target_registration_error  # noqa: E402


def simpleitk_rigid(fixed: sitk.Image, moving: sitk.Image) -> sitk.Transform:
    """SimpleITK's ImageRegistrationMethod: Mattes MI (32 bins, 5 % random samples), regular-step
    gradient descent, 3-level pyramid (shrink 4/2/1, smoothing 2/1/0 voxels), identity start about
    the fixed image centre, physical-shift scales."""
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(32)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(0.05, 1)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(learningRate=1.0, minStep=1e-4, numberOfIterations=300,
                                                    relaxationFactor=0.7)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel([4, 2, 1])
    method.SetSmoothingSigmasPerLevel([2, 1, 0])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    centre = fixed.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in fixed.GetSize()])
    method.SetInitialTransform(sitk.Euler3DTransform(centre, 0, 0, 0, (0, 0, 0)), inPlace=False)
    return method.Execute(sitk.Cast(fixed, sitk.sitkFloat32), sitk.Cast(moving, sitk.sitkFloat32))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="full", choices=("full", "small"))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=1, help="runs per method (the median time is printed)")
    args = parser.parse_args()

    start = time.perf_counter()
    case = generate_phantom(PhantomConfig(seed=args.seed, size=args.size, doses=(0.1,),
                                          max_motion_deg=10.0, max_motion_mm=10.0))
    fixed, moving = case.pre_contrast, case.low_dose[0.1]
    motion = case.parameters["scans"]["low_dose_010"]["motion"]
    m = np.asarray(motion["pre_to_post_lps"])
    truth = sitk.AffineTransform(m[:3, :3].ravel().tolist(), m[:3, 3].tolist())
    print(f"phantom {args.size} {fixed.GetSize()} spacing {fixed.GetSpacing()} seed {args.seed} "
          f"({time.perf_counter() - start:.1f} s to generate); true motion: rotation "
          f"{np.round(motion['rotation_deg'], 2).tolist()} deg, translation {np.round(motion['translation_mm'], 2).tolist()} mm, "
          f"mean brain displacement {motion['brain_displacement_mm']['mean']:.2f} mm")
    try:  # load itk-elastix before timing: its lazy first load takes 10-20 s
        import itk
        itk.ParameterObject.New()
        itk.ElastixRegistrationMethod[itk.Image[itk.F, 3], itk.Image[itk.F, 3]].New()
    except ImportError:
        pass

    methods = {
        "itk-elastix": lambda: register(fixed, moving, RIGID_PARAMETER_FILE, backend="itk").transform,
        "elastix executable": lambda: register(fixed, moving, RIGID_PARAMETER_FILE, backend="executable").transform,
        "SimpleITK rigid (reference)": lambda: simpleitk_rigid(fixed, moving),
    }
    print(f"{'method':30s} {'seconds':>8s} {'mean TRE mm':>12s} {'max TRE mm':>11s}")
    for name, run in methods.items():
        times, transform = [], None
        try:
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                transform = run()
                times.append(time.perf_counter() - t0)
        except (ValueError, RuntimeError) as error:
            print(f"{name:30s} unavailable: {error}")
            continue
        mean, worst = target_registration_error(transform, truth, case.brain_mask)
        print(f"{name:30s} {np.median(times):8.1f} {mean:12.3f} {worst:11.3f}")
    print("seconds include resampling the moving image and the QC metric for the elastix backends, and "
          "image file I/O for the executable.")


if __name__ == "__main__":
    main()
