"""A `neuralop-mp train` run with multi-grid patching reports its true test errors.

The expected error is computed here without the plugin's or upstream's patching code: the
level-1 patches of a 16x16 input built by slicing (a 2x2 split of the grid, and each patch's
coarse context: every other point of the grid around it, wrapping), the saved model run on
each, its outputs decoded and put back into their quadrants, and the relative L2 error of
each sample against the stored target, averaged over the samples.
"""
import json

import pytest
import torch

from neuralop_mp.cli import main

from .test_cli_train import NANO_RUN, nano_root  # noqa: F401 (a fixture)

# the tiny Darcy run of test_cli_train (8 and 4 samples at 16x16), patched once
RUN = [*NANO_RUN, "--model.fno_block_precision", "full", "--opt.n_epochs", "2", "--patching.levels", "1"]


def level_one_patches(x):
    """``[(i, j, patch)]``: the four 8x8 patches of a (1, 1, 16, 16) sample, each with its two
    channels (the quadrant itself; every other point of the 16x16 grid over rows and columns
    8i-4 ... 8i+11, wrapping around: the quadrant's coarse context)."""
    coarse = x[..., ::2, ::2]
    patches = []
    for i in (0, 1):
        for j in (0, 1):
            rows = torch.tensor([(4 * i - 2 + k) % 8 for k in range(8)])
            cols = torch.tensor([(4 * j - 2 + k) % 8 for k in range(8)])
            context = coarse[:, :, rows][:, :, :, cols]
            patches.append((i, j, torch.cat([x[..., 8 * i:8 * i + 8, 8 * j:8 * j + 8], context], dim=1)))
    return patches


@torch.no_grad()
def true_test_error(run, data_root):
    """Mean over the test samples of ``||prediction - y|| / ||y||``, predictions stitched by hand."""
    import neuralop_mp
    from neuralop_mp.run_folder import load_data_processor

    model = neuralop_mp.load_model(run, "model").eval()
    decode = load_data_processor(run).out_normalizer.inverse_transform
    stored = torch.load(data_root / "darcy_test_16.pt", weights_only=False)
    errors = []
    for k in range(4):
        x, y = stored["x"][k:k + 1].float().unsqueeze(1), stored["y"][k:k + 1].float().unsqueeze(1)
        prediction = torch.empty_like(y)
        for i, j, patch in level_one_patches(x):
            prediction[..., 8 * i:8 * i + 8, 8 * j:8 * j + 8] = decode(model(patch))
        errors.append(float((prediction - y).norm() / y.norm()))
    return sum(errors) / len(errors)


@pytest.mark.parametrize("stitching", ["false", "true"])
def test_a_patched_runs_reported_and_evaluated_errors_are_the_true_mean_over_samples(
        nano_root, tmp_path, stitching):  # noqa: F811
    from neuralop_mp.evaluate import run_evaluation

    out = tmp_path / "run"
    assert main(["train", "darcy", "--data.data_root", str(nano_root), "--output_dir", str(out), *RUN,
                 "--patching.stitching", stitching]) == 0
    expected = true_test_error(out, nano_root)
    reported = json.loads((out / "results.json").read_text())["metrics"]["16_l2"]
    assert reported == pytest.approx(expected, abs=1e-6)  # without stitching: 4x too small before
    evaluated = run_evaluation(out, progress=False, log=lambda *a: None)["metrics"]["16_l2"]
    assert evaluated == pytest.approx(expected, abs=1e-6)


def test_diagnose_refuses_a_patched_run_in_one_line(nano_root, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "run"
    assert main(["train", "darcy", "--data.data_root", str(nano_root), "--output_dir", str(out), *RUN]) == 0
    capsys.readouterr()
    assert main(["diagnose", str(out), "--n-samples", "2", "--out", str(tmp_path / "diag")]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.startswith("neuralop-mp diagnose: error:")]
    assert len(lines) == 1 and "multi-grid patching (patching.levels=1" in lines[0] and "Traceback" not in err
    assert not (tmp_path / "diag").exists()
