"""Per-stage seconds and peak memory (io.profiling) and memory-bounded network tiles (inference.predict.auto_tile)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from GadoReduceLib.inference.predict import BYTES_PER_VOXEL_FEATURE, auto_tile, network_memory_bytes, predict_contrast
from GadoReduceLib.io import profiling
from GadoReduceLib.validation.arguments import MIN_TILE, parse_tile
from GadoReduceLib.model.network import ConditionalUNet, ConditionNormalization, ModelConfig


def test_stages_record_seconds_and_their_own_peak_memory():
    from GadoReduceLib.io.memory import release_free_memory
    release_free_memory()  # free heap pages from earlier tests would otherwise hold the block without growing
    with profiling.record() as stages:
        with profiling.stage("outer"):
            profiling._reset_peak()
            before = profiling.peak_memory_mb()  # resident memory as the stage starts
            with profiling.stage("big"):
                block = np.ones(300 * 2 ** 20 // 8)  # 300 MB touched
                del block
            with profiling.stage("small"):
                time.sleep(0.05)
            with profiling.stage("small"):  # a stage entered twice adds its seconds
                time.sleep(0.05)
    record = stages.as_record()
    assert list(record) == ["big", "small", "outer"]
    assert record["small"]["seconds"] >= 0.1
    assert record["outer"]["seconds"] >= record["big"]["seconds"] + record["small"]["seconds"] - 1e-3
    if not stages.resettable:
        pytest.skip("this system cannot reset the peak memory per stage (/proc/self/clear_refs)")
    assert record["big"]["peak_memory_mb"] >= before + 250
    assert record["small"]["peak_memory_mb"] <= record["big"]["peak_memory_mb"]
    assert record["outer"]["peak_memory_mb"] >= record["big"]["peak_memory_mb"], "the enclosing stage keeps it"
    table = stages.table(total="outer").splitlines()
    assert table[-1].startswith("outer") and len(table) == 4


def test_stage_outside_a_record_does_nothing():
    assert profiling.active() is None
    with profiling.stage("nothing"):
        pass
    with profiling.record() as stages:
        assert profiling.active() is stages
    assert profiling.active() is None and stages.as_record() == {}


def test_tile_settings_from_users():
    assert parse_tile("auto") == "auto" and parse_tile(None) is None and parse_tile("whole") is None
    assert parse_tile("128") == 128 and parse_tile(96) == 96
    for bad in ("big", 0, -4, 2.5, "1e9x"):
        with pytest.raises(ValueError, match="tile must be 'auto', 'whole' or a tile edge"):
            parse_tile(bad)
    for small in (4, MIN_TILE - 1):
        with pytest.raises(ValueError, match=f"tile {small} is too small: a tile needs at least {MIN_TILE} voxels"):
            parse_tile(small)


def test_auto_tile_keeps_the_network_within_the_budget():
    shipped, paper = ModelConfig(base_features=8), ModelConfig()
    brats = (155, 240, 240)
    assert auto_tile(brats, shipped, torch.device("cpu"), budget_bytes=64 * 2 ** 30) is None
    large = (300, 512, 512)
    for config in (shipped, paper):
        tile = auto_tile(large, config, torch.device("cpu"), budget_bytes=2.5 * 2 ** 30)
        assert tile is not None and tile % config.alignment == 0 and tile >= 2 * config.alignment
        assert network_memory_bytes(config, (tile,) * 3) <= 2.5 * 2 ** 30
        assert network_memory_bytes(config, (tile + config.alignment,) * 3) > 2.5 * 2 ** 30, "the largest tile"
    assert network_memory_bytes(paper, brats) > 3.5 * network_memory_bytes(shipped, brats)  # 4x the features
    assert BYTES_PER_VOXEL_FEATURE * 32 * 300 * 512 * 512 > 90 * 2 ** 30  # why a 512^2 x 300 volume needs tiles


def test_auto_tiles_are_the_explicit_tiles_and_close_to_the_whole_volume():
    torch.manual_seed(0)
    config = ModelConfig(base_features=4, scales=2, blocks_per_scale=1)  # receptive field radius 18 voxels
    model = ConditionalUNet(config).eval()
    with torch.no_grad():
        model.head.bias.fill_(0.05)
    rng = np.random.default_rng(1)
    shape = (40, 36, 44)
    z, x, s = rng.normal(size=shape), 1 + 0.1 * rng.normal(size=shape), 0.05 + 0.01 * rng.random(shape)
    c = ConditionNormalization().normalize(0.2, 3.0, 4.6, 0.02)
    whole = predict_contrast(model, z, x, s, c, tile=None)
    budget = network_memory_bytes(config, (24, 24, 24)) + 1
    assert auto_tile(shape, config, torch.device("cpu"), budget) == 24
    tiled = predict_contrast(model, z, x, s, c, tile="auto", overlap=20, memory_budget=budget)
    tiled_explicit = predict_contrast(model, z, x, s, c, tile=24, overlap=20)
    assert np.array_equal(tiled, tiled_explicit)
    assert np.abs(tiled - whole).max() <= 1e-3 * np.abs(whole).max()  # the cut margin (10) < the radius (18)


def test_an_interrupt_that_a_library_swallowed_stops_the_run_at_the_next_stage():
    import os
    import signal
    from GadoReduceLib.io.interrupts import interrupted, interrupts_handled
    reached = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts_handled():
            try:  # inside a library (one that even catches everything): the signal must not raise here
                os.kill(os.getpid(), signal.SIGINT)
                for _ in range(10 ** 6):  # the handler runs at the next bytecode and only takes note
                    pass
                reached.append("library finished its step")
            except BaseException:
                pass
            with profiling.stage("registration"):
                reached.append("registration")
    assert reached == ["library finished its step"] and interrupted() == "SIGINT"
    with profiling.stage("a later run's stage"):  # the interrupt of a finished run stops nothing afterwards
        reached.append("later")
    assert reached == ["library finished its step", "later"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the previous handler is back


def test_commands_put_torch_tensors_on_huge_pages_unless_told_otherwise(monkeypatch):
    """io.memory.command_allocator asks PyTorch for transparent huge pages (read at its first allocation), keeps a
    value the user set, and leaves everything as it is under GADOREDUCE_ALLOCATOR=glibc."""
    import os

    from GadoReduceLib.io.memory import command_allocator
    monkeypatch.delenv("THP_MEM_ALLOC_ENABLE", raising=False)
    monkeypatch.setenv("GADOREDUCE_ALLOCATOR", "glibc")
    with command_allocator():
        assert "THP_MEM_ALLOC_ENABLE" not in os.environ
    monkeypatch.delenv("GADOREDUCE_ALLOCATOR")
    with command_allocator():
        assert os.environ["THP_MEM_ALLOC_ENABLE"] == "1"
    monkeypatch.setenv("THP_MEM_ALLOC_ENABLE", "0")
    with command_allocator():
        assert os.environ["THP_MEM_ALLOC_ENABLE"] == "0", "the user's choice is kept"
