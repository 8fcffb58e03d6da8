"""The shipped default model (Resources/Models): integrity, size, model card, held-out evaluation, behaviour.

The held-out check re-runs the evaluation of one held-out BraTS subject from the shared data (skipped with
a message when ../shared/data is absent) and compares it with what the model card claims."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from GadoReduceLib.model.network import input_tensor
from GadoReduceLib.model.files import (ModelFileError, card_path, default_model_path, load_model, model_card,
                                    read_header, verify_checksum)

MAX_BYTES = 40 * 2 ** 20


@pytest.fixture(scope="module")
def header():
    path = default_model_path()
    return read_header(path)[0]


def test_default_model_is_small_verified_and_has_its_card(header):
    from GadoReduceLib.model.checksums import SHIPPED_MODELS, check_model_file
    path = default_model_path()
    assert path.stat().st_size <= MAX_BYTES
    assert verify_checksum(path) == SHIPPED_MODELS[path.name]  # the package knows the shipped file's digest
    assert check_model_file(None).verified and check_model_file(path).warning is None
    assert card_path(path).read_text() == model_card(header)  # the committed card matches the file


def test_model_card_describes_training_data_and_held_out_evaluation(header):
    meta = header["metadata"]
    data = meta["training_data"]
    held, trained = set(data["held_out_subjects"]), set(data["training_subjects"])
    assert len(held) >= 3 and not held & trained
    assert "gadoreduce train" in data["command"]
    rows = meta["evaluation"]
    assert {row["case"] for row in rows} == held
    assert {0.1, 0.33} <= {row["dose"] for row in rows}
    card = card_path(default_model_path()).read_text()
    for column in ("PSNR_B dB", "PSNR_L dB", "SSIM", "c-bar", "c^"):
        assert f"| {column} |" in card or f" {column} |" in card
    assert "not for diagnosis" in card.lower() or "must not be used for diagnosis" in card


def test_model_card_claims_meet_the_targets(header):
    """What the card records: GadoReduce beats the low dose and linear scaling on lesion PSNR at 10 % and
    33 % (means over the held-out subjects), with the maximal relative enhancement c^ in 0.8-1.2."""
    rows = header["metadata"]["evaluation"]
    for dose in (0.1, 0.33):
        sel = [r for r in rows if r["dose"] == dose]
        mean = lambda key: float(np.mean([r[key] for r in sel]))  # noqa: E731
        assert mean("PSNR_L dB") > mean("PSNR_L LD dB")
        assert mean("PSNR_L dB") > mean("PSNR_L linear dB")
        assert 0.8 <= mean("c^") <= 1.2


def test_default_model_is_conditioned_and_positive(rng):
    loaded = load_model(None)
    shape = (24, 24, 24)
    z = np.zeros(shape, np.float32)
    z[8:16, 8:16, 8:16] = 6.0  # a block enhancing by 6 noise sigmas in the low dose
    x = (1.0 + 0.02 * rng.normal(size=shape)).astype(np.float32)
    s = np.full(shape, 0.05, np.float32)
    inputs = input_tensor(z, x, s)
    out = {}
    with torch.no_grad():
        for dose in (0.1, 0.33):
            out[dose] = loaded.model(inputs, loaded.normalization.normalize(dose, 3.0, 4.5, 0.03)).numpy()
    assert all((y >= 0).all() for y in out.values())
    inside = {d: float(y[0, 0, 10:14, 10:14, 10:14].mean()) for d, y in out.items()}
    outside = float(out[0.33][0, 0, :4, :4, :4].mean())
    assert inside[0.33] > outside  # the enhancing block gets contrast signal, the background little
    assert inside[0.1] > inside[0.33]  # the same low-dose signal at a lower dose means more contrast to add


def test_missing_default_model_names_the_fix(monkeypatch, tmp_path):
    from GadoReduceLib.model import checksums
    monkeypatch.setattr(checksums, "DEFAULT_MODEL", ("Models", "absent.pt"))
    with pytest.raises(ModelFileError, match="--model PATH"):
        load_model(None)
