"""What the source of a script tells us before it runs."""
from neuralop_mp.runner.static_check import describe_plan, scan_source, start_warnings

UPSTREAM_LIKE = """
from neuralop import Trainer, get_model
from neuralop.training import AdamW
from neuralop.data.datasets import load_darcy_flow_small
loaders = load_darcy_flow_small(n_train=1)
model = get_model(config)
optimizer = AdamW(model.parameters(), lr=1e-3)
trainer = Trainer(model=model, n_epochs=2)
"""


def test_an_upstream_style_script_is_fully_reachable():
    scan = scan_source(UPSTREAM_LIKE)
    options = {"precision": "mixed", "optimizer": "tensorgrad", "data_root": "/d"}
    assert start_warnings(scan, options) == []
    assert describe_plan(scan) == "get_model; Trainer; AdamW; load_darcy_flow_small"


def test_what_cannot_be_reached_is_named():
    source = (
        "import torch\nfrom neuralop.models import TFNO\nfrom neuralop.training import IncrementalFNOTrainer\n"
        "model = TFNO(n_modes=(4, 4), hidden_channels=4)\n"
        "opt = torch.optim.SGD(model.parameters(), lr=0.1)\n"
        "trainer = IncrementalFNOTrainer(model=model, n_epochs=1)\n"
    )
    warnings = start_warnings(scan_source(source), {"schedule": "paper", "optimizer": "tensorgrad", "data_root": "/d"})
    assert len(warnings) == 3, warnings
    assert "builds its model directly (TFNO(...))" in warnings[0] and "NOT be applied" in warnings[0]
    # upstream's IncrementalFNOTrainer is replaced as neuralop.Trainer is: no "never creates a Trainer"
    assert "creates no neuralop.training.AdamW optimizer" in warnings[1] and "torch.optim.SGD" in warnings[1]
    assert "--mp.data-root" in warnings[2]


def test_without_precision_request_a_direct_model_is_only_mentioned():
    warnings = start_warnings(scan_source("model = FNO(n_modes=(4,))\nTrainer(model=model)\n"), {})
    assert warnings == ["the script builds its model directly (FNO(...)): its model keeps upstream's spectral layer."]


def test_torch_optimizers_are_named_as_kept():
    source = (
        "import torch\nfrom torch.optim import AdamW\nfrom neuralop import get_model, Trainer\n"
        "model = get_model(config)\nopt = AdamW(model.parameters())\n"
        "other = torch.optim.Adam(model.parameters())\nTrainer(model=model)\n"
    )
    scan = scan_source(source)
    assert scan.torch_optimizers == ["torch.optim.Adam", "torch.optim.AdamW"]
    assert scan.replaceable_optimizers == []
    (warning,) = start_warnings(scan, {"optimizer": "tensorgrad"})
    assert "torch.optim.Adam, torch.optim.AdamW" in warning and "is kept" in warning
    assert "no neuralop AdamW" in describe_plan(scan)


def test_only_upstreams_own_script_is_refused_not_a_namesake():
    from neuralop_mp.runner.upstream_scripts import refusal_reason

    assert "GINO" in refusal_reason("train_poisson.py", "from config.poisson_gino_config import Default\n")
    assert refusal_reason("train_poisson.py", "from my_configs import Default\n") is None
    assert refusal_reason("train_darcy.py", "from config.darcy_config import Default\n") is None
