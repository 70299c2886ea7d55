"""The learned atmospheric correction: trained on simulated scenes, judged on scenes it has not seen."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from musyq.ard.learned import check, load_emulator, simulate_cases
from musyq.cli import app


def _run(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output + repr(result.exception)
    return " ".join(result.output.split())


@pytest.mark.parametrize(("sensor", "bands", "bound"), [("GF1_WFV1", None, 0.008), ("S2A_MSI", None, 0.005)])
def test_held_out_scenes_are_corrected_within_the_targets(sensor: str, bands: str | None, bound: float,
                                                          tmp_path: Path) -> None:
    """Surfaces from another library draw, atmospheres (AOD 0-0.8) and geometries not trained on: per band and
    per AOD range the RMSE against the true surface stays within 0.008 for the four WFV bands and 0.005 for
    Sentinel-2's eleven. Measured with 1000 scenes, 2 members, 20 epochs: GF-1 blue-red 0.0012-0.0018, nir
    0.006 (the vapour no WFV band sees); Sentinel-2 at most 0.002."""
    model = tmp_path / "model.npz"
    text = _run("learn", "build", "--sensor", sensor, "--scenes", "800", "--members", "2", "--epochs", "16",
                "--out", str(model))
    assert "validation RMSE" in text
    emulator = load_emulator(model)
    assert emulator.sensor_id == sensor and emulator.record["scenes"] == 800
    result = check(emulator, simulate_cases(sensor, emulator.bands, 150, 77))
    for values in (result.rmse, *result.rmse_by_aot.values()):
        assert max(values.values()) < bound, values
    assert len(result.rmse_by_aot) == 4
    assert max(abs(v) for v in result.bias.values()) < bound / 2
    # the spread, scaled on the model's own validation scenes, covers about as often as one sigma should
    assert 0.6 < result.coverage < 0.77, result.coverage
    text = _run("learn", "check", str(model), "--scenes", "40")
    assert "held-out pixels; the uncertainty covers" in text


def test_bad_inputs_are_named(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["learn", "build", "--sensor", "GF1_WFV1", "--bands", "B1,B7", "--out",
                                      str(tmp_path / "m.npz")])
    assert result.exit_code == 1 and "GF1_WFV1 has no surface band B7" in " ".join(result.output.split())
    assert not (tmp_path / "m.npz").exists()
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a model")
    result = CliRunner().invoke(app, ["learn", "check", str(junk)])
    text = " ".join(result.output.split())
    assert result.exit_code == 1 and "not a musyq learned-correction model" in text and "Traceback" not in text
    np.testing.assert_equal(junk.read_bytes(), b"not a model")
