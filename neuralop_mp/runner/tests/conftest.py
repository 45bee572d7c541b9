"""Fixtures of the runner tests: fake plugin parts, blocked network, tiny data files.

The runner's own logic (what is patched, restored, forwarded, recorded) is tested
against small fakes so it does not depend on the layer, trainer and optimizer
being finished; integration_tests/test_run_scripts.py runs it with the real ones.
"""
import socket
from types import SimpleNamespace

import pytest
import torch
from neuralop.layers.spectral_convolution import SpectralConv
from neuralop.models.base_model import get_model as upstream_get_model
from neuralop.training.trainer import Trainer as UpstreamTrainer
from zencfg.bunch import Bunch

from neuralop_mp.runner import activation, intercept


class FakeMixedPrecisionSpectralConv(SpectralConv):
    """Stands for MixedPrecisionSpectralConv: only its type matters to the runner."""


class FakeMixedPrecisionTrainer(UpstreamTrainer):
    """Records the plugin-only keyword arguments it was given."""

    def __init__(self, *, precision_schedule=None, half_dtype="auto", loss_scaling="auto", update_in_backward=False,
                 **kwargs):
        super().__init__(**kwargs)
        self.update_in_backward = update_in_backward
        self.precision_schedule = precision_schedule
        # as the real trainer keeps it (the runner's summary notes it)
        self.overruled_autocast = None if precision_schedule is None else precision_schedule.autocast_overruled(
            self.mixed_precision)
        self.half_dtype = half_dtype
        self.loss_scaling = loss_scaling
        self.history = [{"epoch": 0, "precision": "mixed", "skipped_steps": 1, "epoch_time": 0.5}]


def _fake_parts(calls):
    def get_model(config, precision_policy=None):
        calls["get_model"].append(config)
        calls.setdefault("policies", []).append(precision_policy)
        model_cfg = dict(config["model"])
        layer = model_cfg.get("fno_block_precision", "full") != "full" or bool(
            (config.get("opt") or {}).get("precision_schedule")
        )
        for key in ("fno_block_precision", "half_dtype", "stabilizer", "recompute", "recompute_chunk_points"):
            model_cfg.pop(key, None)
        if layer:
            model_cfg["conv_module"] = FakeMixedPrecisionSpectralConv
        return upstream_get_model(Bunch({"model": Bunch(model_cfg), "patching": {"levels": 0}}))

    def create_optimizer(model, opt_config):
        calls["create_optimizer"].append((model, dict(opt_config)))
        # goes through the patched torch.optim.AdamW when the runner replaced it:
        # the stand-in must step aside instead of recursing
        return torch.optim.AdamW(model.parameters(), lr=opt_config["learning_rate"])

    return SimpleNamespace(
        get_model=get_model,
        MixedPrecisionTrainer=FakeMixedPrecisionTrainer,
        MixedPrecisionSpectralConv=FakeMixedPrecisionSpectralConv,
        create_optimizer=create_optimizer,
    )


@pytest.fixture
def fake_parts(monkeypatch):
    """Replace the plugin parts by fakes; yields the dict of calls they received."""
    calls = {"get_model": [], "create_optimizer": []}
    monkeypatch.setattr(intercept, "plugin_parts", lambda: _fake_parts(calls))
    yield calls
    activation.disable()  # a failing test must not leave the plugin on for the next one


@pytest.fixture
def tiny_config():
    """An upstream-style config (dict of sections) for a 2-layer 2D FNO."""
    return {
        "model": {
            "model_arch": "fno",
            "data_channels": 1,
            "out_channels": 1,
            "n_modes": [4, 4],
            "hidden_channels": 8,
            "n_layers": 2,
        },
        "patching": {"levels": 0},
        "opt": {"learning_rate": 1e-3},
    }


@pytest.fixture
def no_network(monkeypatch):
    """Every attempt to resolve a host or open an internet connection is recorded and refused.

    Local (AF_UNIX) sockets still work: DataLoader worker processes talk over them.
    """
    attempts = []
    originals = {"connect": socket.socket.connect, "connect_ex": socket.socket.connect_ex}

    def refuse_method(what):
        def refused(self, address, *args):
            if self.family == getattr(socket, "AF_UNIX", None):
                return originals[what](self, address, *args)
            attempts.append((what, address))
            raise OSError(f"network disabled in this test ({what} {address!r})")

        return refused

    def refuse_function(what):
        def refused(*args, **kwargs):
            attempts.append((what, args))
            raise OSError(f"network disabled in this test ({what} {args!r})")

        return refused

    monkeypatch.setattr(socket.socket, "connect", refuse_method("connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", refuse_method("connect_ex"))
    monkeypatch.setattr(socket, "create_connection", refuse_function("create_connection"))
    monkeypatch.setattr(socket, "getaddrinfo", refuse_function("getaddrinfo"))
    return attempts


def write_pt_pair(root, prefix, res, n, x_shape, y_shape, seed):
    """Write ``{prefix}_{train,test}_{res}.pt`` with random x, y; return the train dict."""
    g = torch.Generator().manual_seed(seed)
    data = {}
    for split in ("train", "test"):
        data[split] = {"x": torch.randn(n, *x_shape, generator=g), "y": torch.randn(n, *y_shape, generator=g)}
        torch.save(data[split], root / f"{prefix}_{split}_{res}.pt")
    return data["train"]
