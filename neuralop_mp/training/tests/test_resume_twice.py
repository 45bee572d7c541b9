"""A checkpoint written before the optimizer's groups recorded ``initial_lr`` (46bf77a) and
TensorGRaD's state dict listed ``param_shapes`` (dac84f7) resumes, and the checkpoint that
resume writes resumes again: the check that tells another optimizer's file by the settings
of its groups leaves bookkeeping keys out. A file of another optimizer is still refused."""
import os

import pytest
import torch

from neuralop_mp.run_folder import CHECKPOINT_DIR
from neuralop_mp.training import checkpointing
from neuralop_mp.training.checkpointing import MANIFEST_FILE, CheckpointError

from .test_resume_mends import PLATEAU, TINY_RUN, four_samples, train  # noqa: F401 (four_samples: a fixture)
from .tiny import tiny_fno


def _rewrite(folder, edit_state, edit_manifest=lambda manifest: None):
    """Edit ``optimizer.pt`` of a checkpoint folder in place, and its manifest to match."""
    path = folder / "optimizer.pt"
    state = torch.load(path, weights_only=True)
    edit_state(state)
    torch.save(state, path)
    manifest = torch.load(folder / MANIFEST_FILE, weights_only=True)
    manifest["files"]["optimizer.pt"].update(size=path.stat().st_size, sha256=checkpointing.file_digest(path))
    edit_manifest(manifest)
    torch.save(manifest, folder / MANIFEST_FILE)


def _as_older_code_saved_it(resumed_before):
    """The optimizer state as the code before 46bf77a and dac84f7 wrote it: no ``initial_lr``
    in the groups, no ``param_shapes``; once that code had resumed the run, its TensorGRaD
    groups also held ``differentiable``, taken from the defaults torch's load adds it to."""

    def edit(state):
        state.pop("param_shapes", None)
        for group in state["param_groups"]:
            del group["initial_lr"]
            if resumed_before:
                group.setdefault("differentiable", False)

    return edit


# The code before 46bf77a and dac84f7, as it is in this repository's history: it writes the
# older checkpoints for real (no initial_lr in the groups, no param_shapes; resumed by it, its
# TensorGRaD groups also hold "differentiable").
OLDER_CODE = "a6ddb0ba35ce4925fd582a4b4432761651cff3e2"
OLDER_RUN = """
import sys
import torch
from torch.utils.data import DataLoader
import neuralop_mp
assert neuralop_mp.__file__.startswith(sys.argv[1]), neuralop_mp.__file__
from neuralop_mp import train_pipeline as pipeline
from neuralop_mp.configs import load_config
generator = torch.Generator().manual_seed(0)
samples = [{"x": torch.randn(1, 8, 8, generator=generator), "y": torch.randn(1, 8, 8, generator=generator)}
           for _ in range(4)]
loaders = (DataLoader(samples, batch_size=4), {8: DataLoader(samples, batch_size=4)}, None)
pipeline.build_data = lambda config, progress=True: loaders
overrides = dict(arg.split("=", 1) for arg in sys.argv[4:])
pipeline.run_training(load_config("darcy", overrides), progress=False, output_dir=sys.argv[2],
                      log=lambda *args, **kwargs: None, resume=sys.argv[3] == "resume",
                      command=("darcy", [f"--{key}={value}" for key, value in overrides.items()]))
"""


@pytest.fixture(scope="module")
def older_code(tmp_path_factory):
    """The package at OLDER_CODE, extracted from git (skipped outside a git clone)."""
    import io
    import shutil
    import subprocess
    import tarfile
    from pathlib import Path

    repo = Path(__file__).resolve().parents[3]
    if shutil.which("git") is None or not (repo / ".git").exists():
        pytest.skip("needs this repository's git history")
    archive = subprocess.run(["git", "-C", str(repo), "archive", OLDER_CODE, "neuralop_mp", "configs"],
                             capture_output=True)
    if archive.returncode != 0:
        pytest.skip(f"commit {OLDER_CODE} is not in this clone's history")
    root = tmp_path_factory.mktemp("older_code")
    tarfile.open(fileobj=io.BytesIO(archive.stdout)).extractall(root, filter="data")
    (root / "neuralop_mp" / "configs").symlink_to("../configs")  # as the package installs them
    return root


def train_with_older_code(root, out, n_epochs, resume=False, **overrides):
    import subprocess
    import sys

    settings = {**TINY_RUN, "opt.n_epochs": str(n_epochs), **overrides}
    done = subprocess.run([sys.executable, "-c", OLDER_RUN, str(root), str(out), "resume" if resume else "new",
                           *(f"{key}={value}" for key, value in settings.items())],
                          env={**os.environ, "PYTHONPATH": str(root)}, cwd=out.parent, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.parametrize("optimizer, resumed_before", [("tensorgrad", False), ("tensorgrad", True),
                                                        ("adamw", False)],
                         ids=["tensorgrad", "tensorgrad-resumed-by-older-code", "adamw"])
@pytest.mark.slow  # starts Python interpreters of its own: the end-to-end tier (pyproject.toml)
def test_an_older_plateau_checkpoint_resumes_twice(older_code, four_samples, tmp_path, optimizer, resumed_before):
    """The first epochs trained by the older code itself, then two resumes by this code."""
    settings = {**PLATEAU, "opt.optimizer": optimizer}
    out = tmp_path / "run"
    train_with_older_code(older_code, out, 1, **settings)
    if resumed_before:
        train_with_older_code(older_code, out, 2, resume=True, **settings)
    folder = out / CHECKPOINT_DIR
    saved = torch.load(folder / "optimizer.pt", weights_only=True)
    assert "param_shapes" not in saved and not any("initial_lr" in group for group in saved["param_groups"])
    first = 2 if resumed_before else 1
    train(out, first + 1, resume=True, **settings)
    saved = torch.load(folder / "optimizer.pt", weights_only=True)
    assert not any("initial_lr" in group for group in saved["param_groups"])  # the older groups were loaded
    result = train(out, first + 2, resume=True, **settings)
    assert [h["epoch"] for h in result["history"]] == list(range(first + 2))
    saved = torch.load(folder / "optimizer.pt", weights_only=True)
    assert not any("param_shapes" in group for group in saved["param_groups"])
    if optimizer == "tensorgrad":
        assert len(saved["param_shapes"]) == len(saved["param_groups"])


@pytest.mark.parametrize("saved_with, resumed_with, resumed_before", [
    ("adamw", "tensorgrad", False), ("tensorgrad", "adamw", False), ("tensorgrad", "adamw", True)],
    ids=["adamw-into-tensorgrad", "tensorgrad-into-adamw", "resumed-tensorgrad-into-adamw"])
def test_an_older_checkpoint_of_another_optimizer_is_still_refused(four_samples, tmp_path, saved_with,
                                                                   resumed_with, resumed_before):
    """Without a recorded class (older checkpoints), the groups' settings tell the optimizer."""
    out = tmp_path / "run"
    train(out, 1, **PLATEAU, **{"opt.optimizer": saved_with})
    folder = out / CHECKPOINT_DIR
    _rewrite(folder, _as_older_code_saved_it(resumed_before), lambda manifest: manifest.pop("classes"))
    name = {"adamw": "AdamW", "tensorgrad": "TensorGRaD"}[resumed_with]
    with pytest.raises(CheckpointError, match=rf"optimizer.pt was written by another optimizer than this run's "
                                              rf"{name}: parameter group 0 has settings \['") as refused:
        train(out, 2, resume=True, **PLATEAU, **{"opt.optimizer": resumed_with})
    for key in ("initial_lr", "differentiable", "param_shapes", "param_names"):
        assert key not in str(refused.value)


# ------------------------------------------------------ the check on its own
def _adamw_with_plateau_bookkeeping():
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(3))], lr=1e-3)
    for group in optimizer.param_groups:
        group.update(initial_lr=1e-3, param_names=["w"])
    return optimizer


def test_groups_that_differ_in_bookkeeping_alone_are_accepted(tmp_path):
    """What schedulers write into groups (on one side only when the scheduler or the code that
    recorded it changed), torch's parameter names and torch's "differentiable" tell no class."""
    optimizer = _adamw_with_plateau_bookkeeping()
    state = optimizer.state_dict()
    for group in state["param_groups"]:
        del group["initial_lr"], group["param_names"], group["differentiable"]
        group.update(max_lr=1e-2, min_lr=1e-5, base_momentum=0.85, max_momentum=0.95, swa_lr=1e-3)
    # and a setting on one side only, as a newer torch adds to a class
    del state["param_groups"][0]["fused"]
    checkpointing.check_optimizer_state(optimizer, state, tmp_path / "optimizer.pt")


def test_another_optimizers_groups_are_refused_with_bookkeeping_on_both_sides(tmp_path):
    optimizer = _adamw_with_plateau_bookkeeping()
    sgd = torch.optim.SGD([torch.nn.Parameter(torch.zeros(3))], lr=1e-3, momentum=0.9)
    state = sgd.state_dict()
    state["param_groups"][0]["swa_lr"] = 1e-3  # bookkeeping on the saved side only
    # AdamW's list grows with torch's versions (decoupled_weight_decay in 2.7)
    with pytest.raises(CheckpointError, match=r"optimizer.pt was written by another optimizer than this run's AdamW: "
                                              r"parameter group 0 has settings \['dampening', 'momentum', "
                                              r"'nesterov'\] that it lacks and lacks \['amsgrad', 'betas', "
                                              r"'capturable', (.*)'eps'\]\.$") as refused:
        checkpointing.check_optimizer_state(optimizer, state, tmp_path / "optimizer.pt")
    assert not any(key in str(refused.value) for key in ("initial_lr", "param_names", "swa_lr"))


def test_a_tensorgrad_file_is_refused_by_adamw_whatever_its_bookkeeping(tmp_path):
    from neuralop_mp.optim import TensorGRaD

    model = tiny_fno()
    state = TensorGRaD(model.parameters()).state_dict()
    for group in state["param_groups"]:
        group["differentiable"] = False  # as a TensorGRaD resumed by older code saved it
    optimizer = torch.optim.AdamW(model.parameters())
    for group in optimizer.param_groups:
        group["initial_lr"] = group["lr"]
    with pytest.raises(CheckpointError, match=r"written by another optimizer than this run's AdamW: parameter group "
                                              r"0 has settings \['activation_checkpoint', 'adam_convention', "):
        checkpointing.check_optimizer_state(optimizer, state, tmp_path / "optimizer.pt")
