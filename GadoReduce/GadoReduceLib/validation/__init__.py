"""Input validation, the first stage of every entry point (CLI, Slicer module, worker): everything that can be
checked before heavy work is checked here, each failure one line naming the input, the problem and the fix.

- :mod:`.arguments`: settings that need no image and no torch (dose, field strength, agent, device, tile, test-time
  augmentation, precision, model file, output folder), so an argument error arrives within a second;
- :mod:`.images`: the input files (present, complete, not corrupt) and images (3D, scalar, finite, size, spacing,
  overlap, not identical), before registration starts.

Research software, not for diagnosis.
"""
