import pytest
import torch
from neuralop.models import FNO, TFNO

from neuralop_mp.optim import TensorGRaD, create_optimizer, fno_tensorgrad_param_groups, list_optimizers


@pytest.fixture(scope="module")
def fno():
    torch.manual_seed(0)
    return FNO(n_modes=(8, 8), in_channels=1, out_channels=1, hidden_channels=16, n_layers=2)


def _names(model, params):
    ids = {id(p) for p in params}
    return sorted(n for n, p in model.named_parameters() if id(p) in ids)


def test_param_groups_select_dense_spectral_weights(fno):
    regular, spectral = fno_tensorgrad_param_groups(fno, rank=0.2, sparse_ratio=0.05)
    assert _names(fno, spectral["params"]) == ["fno_blocks.convs.0.weight.tensor", "fno_blocks.convs.1.weight.tensor"]
    assert len(regular["params"]) + len(spectral["params"]) == len(list(fno.parameters()))
    assert spectral["tensorgrad"] is True and spectral["sparse_ratio"] == 0.05 and spectral["rank"] == 0.2
    assert "sparse_ratio" not in fno_tensorgrad_param_groups(fno)[1]  # upstream: low-rank only by default


def test_param_groups_select_tucker_factorized_core_and_factors():
    torch.manual_seed(0)
    model = TFNO(n_modes=(8, 8), in_channels=1, out_channels=1, hidden_channels=32, n_layers=1,
                 factorization="tucker", rank=0.5)
    _, spectral = fno_tensorgrad_param_groups(model, min_params=100)
    names = _names(model, spectral["params"])
    assert names and all(n.startswith("fno_blocks.convs.0.weight.") for n in names)
    assert any("core" in n for n in names) and any("factors" in n for n in names)


def test_param_groups_need_spectral_layers():
    with pytest.raises(ValueError, match="No SpectralConv parameter of Linear has >= min_params=1000"):
        fno_tensorgrad_param_groups(torch.nn.Linear(4, 4))


def test_upstream_style_groups_train_an_fno(fno):
    opt = TensorGRaD(fno_tensorgrad_param_groups(fno, rank=0.25, sparse_ratio=0.05, update_proj_gap=2), lr=1e-3)
    x = torch.randn(2, 1, 16, 16)
    for _ in range(3):
        opt.zero_grad()
        fno(x).square().mean().backward()
        opt.step()
    spectral = opt.param_groups[1]["params"][0]
    assert bool(opt.state[spectral]["compressed"]) and "sparse_exp_avg" in opt.state[spectral]
    assert not any(bool(opt.state[p]["compressed"]) for p in opt.param_groups[0]["params"])


class _Config:
    """Attribute-style config section, like a zencfg config or a Bunch."""

    def __init__(self, **fields):
        self.__dict__.update(fields)


def test_factory_names_and_fields_reach_the_optimizer(fno):
    assert list_optimizers() == ("adamw", "tensorgrad", "galore", "sparse")
    cfg = _Config(optimizer="tensorgrad", learning_rate=3e-3, weight_decay=1e-4, betas=[0.8, 0.99],
                  tensorgrad_rank=0.3, tensorgrad_sparse_ratio=0.1, tensorgrad_sparse_type="topk",
                  tensorgrad_update_proj_gap=25, tensorgrad_scale=0.5, tensorgrad_state_dtype="bfloat16",
                  tensorgrad_min_params=500, tensorgrad_order="lowrank_first")
    opt = create_optimizer(fno, cfg)
    plain, compressed = opt.param_groups
    assert isinstance(opt, TensorGRaD) and plain["compress"] is False
    expected = dict(lr=3e-3, weight_decay=1e-4, betas=(0.8, 0.99), rank=0.3, sparse_ratio=0.1, sparse_type="topk",
                    update_proj_gap=25, scale=0.5, state_dtype="bfloat16", min_params=500, order="lowrank_first",
                    compress=True, rank_convention="core")
    assert {k: compressed[k] for k in expected} == expected


@pytest.mark.parametrize("name, rank, sparse_ratio", [("galore", 0.25, None), ("sparse", None, 0.05)])
def test_factory_single_branch_variants(fno, name, rank, sparse_ratio):
    group = create_optimizer(fno, {"optimizer": name})
    assert (group.param_groups[1]["rank"], group.param_groups[1]["sparse_ratio"]) == (rank, sparse_ratio)


def test_factory_adamw_is_torchs(fno):
    opt = create_optimizer(fno, {"optimizer": "AdamW", "learning_rate": 2e-3, "weight_decay": 0.01})
    assert type(opt) is torch.optim.AdamW
    assert (opt.param_groups[0]["lr"], opt.param_groups[0]["weight_decay"]) == (2e-3, 0.01)


def test_factory_accepts_a_whole_config_and_zencfg(fno):
    from zencfg import ConfigBase

    class Opt(ConfigBase):
        optimizer: str = "tensorgrad"
        learning_rate: float = 1e-3
        tensorgrad_rank: float = 0.5

    assert create_optimizer(fno, Opt()).param_groups[1]["rank"] == 0.5
    assert isinstance(create_optimizer(fno, {"opt": {"optimizer": "galore"}}), TensorGRaD)


def test_factory_unknown_names_list_the_known_ones(fno):
    with pytest.raises(ValueError, match=r"opt.optimizer='adam'; allowed values: 'adamw', 'tensorgrad', 'galore'"):
        create_optimizer(fno, {"optimizer": "adam"})
    with pytest.raises(ValueError, match=r"tensorgrad_rnak.*tensorgrad_rank"):
        create_optimizer(fno, {"optimizer": "tensorgrad", "tensorgrad_rnak": 0.3})
