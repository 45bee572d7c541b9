"""A parameter gets compressed moments only where they take less memory than AdamW's."""
import pytest
import torch

import neuralop_mp
from neuralop_mp.bench.optimizer import SIZES
from neuralop_mp.optim import TensorGRaD
from neuralop_mp.optim.adam_math import compute_dtype
from neuralop_mp.optim.param_groups import fno_tensorgrad_param_groups
from neuralop_mp.optim.settings import DEFAULTS
from neuralop_mp.optim.state_memory import compressed_state_bytes, compression_saves_memory, plain_state_bytes
from neuralop_mp.optim.tests.helpers import force_compression, random_tensor


def _cp_tfno():
    torch.manual_seed(0)
    return neuralop_mp.MixedPrecisionTFNO(n_modes=(32, 32), in_channels=1, out_channels=1, hidden_channels=64,
                                         n_layers=1, factorization="cp", rank=0.05, fno_block_precision="mixed")


def _stepped(model, optimizer):
    model(torch.randn(1, 1, 64, 64)).square().mean().backward()
    optimizer.step()
    return optimizer.memory_report()


def test_cp_factorized_tfno_compresses_its_factors_below_adamw():
    # its CP factors (64 x 629 ...) at the default "core" rank 0.25 get ranks (32, 32): the
    # second clipped to the first (a 629 x 314 factor, 3.6x AdamW's state in all, kept them
    # plain before ranks were clipped)
    model = _cp_tfno()
    optimizer = neuralop_mp.create_optimizer(model, {"optimizer": "tensorgrad", "learning_rate": 1e-3})
    report = _stepped(model, optimizer)
    compressed = [p for p, state in optimizer.state.items() if bool(state["compressed"])]
    assert [tuple(p.shape) for p in compressed] == [(64, 629), (64, 629), (32, 629), (17, 629)]
    assert all(optimizer.state[p]["low_rank_basis_factor_1"].shape[1] <= p.shape[0] // 2 for p in compressed)
    assert report["kept_plain"] == 0 and report["state_ratio"] < 0.5


def test_cp_factors_through_upstream_style_groups_stay_compressed():
    # upstream's groups read a float rank as tensorly's (core and factors hold 25% of the
    # entries) with no sparse part: there compressing the same factors does save memory
    model = _cp_tfno()
    optimizer = TensorGRaD(fno_tensorgrad_param_groups(model))
    report = _stepped(model, optimizer)
    compressed = [p for p in optimizer.param_groups[1]["params"] if bool(optimizer.state[p]["compressed"])]
    assert len(compressed) == 4 and report["kept_plain"] == 0
    assert report["state_ratio"] < 0.3


@pytest.mark.parametrize("size", ["small", "medium", "large2d"])
@pytest.mark.parametrize("settings", [{}, {"state_dtype": "bfloat16"}, {"adam_convention": "neuralop"},
                                      {"reset_sparse_moments": False}])
def test_dense_spectral_weights_at_the_benchmark_sizes_are_compressed(size, settings):
    hidden, modes = SIZES[size][:2]
    weight = torch.empty((hidden, hidden, modes, modes // 2 + 1), dtype=torch.complex64, device="meta")
    group = {**DEFAULTS, **settings}
    assert TensorGRaD.routes_to_compression(weight, group)
    projector = TensorGRaD.projector_for(group)
    # the defaults keep about a third of AdamW's state (docs/tensorgrad.md, "Memory")
    ratio = compressed_state_bytes(weight.shape, torch.complex64, group, projector) / plain_state_bytes(
        weight.shape, torch.complex64, "torch")
    assert ratio < 0.45


def test_a_benchmark_fno_compresses_every_spectral_weight():
    hidden, modes, layers = SIZES["small"][:3]
    model = neuralop_mp.MixedPrecisionFNO(n_modes=(modes, modes), in_channels=1, out_channels=1,
                                          hidden_channels=hidden, n_layers=layers)
    optimizer = neuralop_mp.create_optimizer(model, {"optimizer": "tensorgrad", "learning_rate": 1e-3})
    report = _stepped(model, optimizer)
    compressed = [p for p, state in optimizer.state.items() if bool(state["compressed"])]
    assert len(compressed) == layers and all(p.shape == (hidden, hidden, modes, modes // 2 + 1) for p in compressed)
    assert report["kept_plain"] == 0 and report["state_ratio"] < 0.4


def _grown_state_bytes(state):
    """Bytes of the state tensors that grow with the parameter (not the 0-d counters)."""
    return sum(t.numel() * t.element_size() for t in state.values() if isinstance(t, torch.Tensor) and t.dim())


# (shape, dtype, settings): shapes where compression pays and where it does not
CASES = [
    ((6, 5, 4, 3), torch.complex64, {}),
    ((6, 5, 4, 3), torch.complex64, {"adam_convention": "neuralop", "state_dtype": "bfloat16"}),
    ((6, 5, 4, 3), torch.complex64, {"reset_sparse_moments": False}),  # births, one int32 per sparse entry
    ((6, 5, 4, 3), torch.complex64, {"sparse_type": "topk"}),
    ((6, 5, 4, 3), torch.complex64, {"sparse_type": "structured_randk", "sparse_mode": 3,
                                     "reset_sparse_moments": False}),
    # complex32 weights step in complex64: the estimate's compute dtype is not the weight's
    ((6, 5, 4, 3), torch.complex32, {"state_dtype": "bfloat16", "reset_sparse_moments": False}),
    ((40, 30), torch.float32, {}),
    ((40, 30), torch.float32, {"rank": 0.5}),
    ((17, 629), torch.complex64, {}),  # a CP factor: a 629 x 314 factor
    ((17, 629), torch.complex64, {"rank_convention": "params", "sparse_ratio": None, "order": "lowrank_first"}),
    ((8, 9, 10), torch.float32, {"sparse_type": "structured", "sparse_mode": 1, "rank": (3, 9, 4)}),
    ((8, 9, 10), torch.complex64, {"rank": None, "sparse_ratio": 0.3}),
    ((8, 9, 10), torch.complex64, {"rank": 1.0, "sparse_ratio": None}),  # full rank: no factor, as large as AdamW
]


@pytest.mark.filterwarnings("ignore:ComplexHalf support is experimental")
@pytest.mark.parametrize("shape, dtype, settings", CASES)
def test_the_routing_estimate_is_the_measured_state(shape, dtype, settings, monkeypatch):
    def stepped(compress):
        weight = torch.nn.Parameter(random_tensor(shape, dtype.is_complex, 1).to(dtype))
        optimizer = TensorGRaD([weight], min_params=10, update_proj_gap=1, compress=compress, **settings)
        for seed in (2, 3):  # the second step refreshes the bases: kept sparse moments get births
            weight.grad = random_tensor(shape, dtype.is_complex, seed).to(dtype)
            optimizer.step()
        return weight, optimizer

    saves = None
    weight, optimizer = stepped(compress=False)
    group = optimizer.param_groups[0]
    plain = _grown_state_bytes(optimizer.state[weight])
    assert plain == plain_state_bytes(shape, compute_dtype(weight), group["adam_convention"])
    with monkeypatch.context() as patch:
        force_compression(patch)
        weight, optimizer = stepped(compress=True)
        assert bool(optimizer.state[weight]["compressed"])
        group = optimizer.param_groups[0]
        measured = _grown_state_bytes(optimizer.state[weight])
        assert measured == compressed_state_bytes(shape, compute_dtype(weight), group,
                                                  TensorGRaD.projector_for(group))
        saves = compression_saves_memory(weight, group, TensorGRaD.projector_for(group))
    assert saves == (measured < plain)
    # unforced, the optimizer keeps whichever is smaller, and the report says why
    weight, optimizer = stepped(compress=True)
    assert bool(optimizer.state[weight]["compressed"]) == saves
    assert optimizer.memory_report()["kept_plain"] == (not saves)
    assert _grown_state_bytes(optimizer.state[weight]) == min(measured, plain)


def _old_routing(patch):
    """The routing before compression had to save memory: every eligible parameter compressed."""
    patch.setattr(TensorGRaD, "routes_to_compression", staticmethod(TensorGRaD.eligible_for_compression))


# an eligible weight that compression does not pay for (rank 1.0: a full core plus the sparse
# part's moments), real and complex, with refreshes between the steps
RESUMED = [((8, 200), False, {"rank": 1.0}),
           ((17, 629), True, {"rank": 1.0, "reset_sparse_moments": False}),
           # bf16 moments halve the core's bytes: a larger sparse part keeps compressing from paying
           ((8, 200), False, {"rank": 1.0, "sparse_ratio": 0.6, "state_dtype": "bfloat16",
                              "adam_convention": "neuralop"})]


@pytest.mark.parametrize("shape, complex_, settings", RESUMED)
def test_a_state_saved_compressed_where_compression_does_not_pay_resumes_compressed(
        shape, complex_, settings, monkeypatch):
    # a run saved by a version that compressed every eligible weight resumes as it would have
    # gone on under that version, bit for bit: the step follows the saved flag
    def fresh(values):
        weight = torch.nn.Parameter(values.clone())
        return weight, TensorGRaD([weight], min_params=10, update_proj_gap=2, **settings)

    start = random_tensor(shape, complex_, 1).to(torch.complex64 if complex_ else torch.float32)
    grads = [random_tensor(shape, complex_, seed).to(start.dtype) for seed in (2, 3, 4, 5)]

    def steps(weight, optimizer, some):
        for grad in some:
            weight.grad = grad.clone()
            optimizer.step()

    with monkeypatch.context() as patch:
        _old_routing(patch)
        reference, old = fresh(start)
        steps(reference, old, grads)  # 4 steps under the old rule
        weight, saved = fresh(start)
        steps(weight, saved, grads[:2])
        assert bool(saved.state[weight]["compressed"])
        state_dict, values = saved.state_dict(), weight.detach().clone()
    resumed, optimizer = fresh(values)
    group = optimizer.param_groups[0]
    assert TensorGRaD.eligible_for_compression(resumed, group) and not TensorGRaD.routes_to_compression(resumed, group)
    optimizer.load_state_dict(state_dict)
    steps(resumed, optimizer, grads[2:])
    assert bool(optimizer.state[resumed]["compressed"])
    assert torch.equal(resumed, reference)
    kept, expected = optimizer.state[resumed], old.state[reference]
    assert sorted(kept) == sorted(expected)
    for key, tensor in expected.items():
        assert kept[key].dtype == tensor.dtype and torch.equal(kept[key], tensor), key
    assert optimizer.memory_report()["kept_plain"] == 0


@pytest.mark.parametrize("saved_group", [{"compress": False}, {"min_params": 10_000}],
                         ids=["compress_false", "too_small"])
def test_a_state_saved_compressed_for_a_parameter_that_cannot_be_compressed_is_refused_by_name(saved_group):
    # compressed moments where the (saved) settings compress nothing: another optimizer's state
    def fresh():
        weight = torch.nn.Parameter(random_tensor((6, 5, 4, 3), True, 1).to(torch.complex64))
        return weight, TensorGRaD([weight], min_params=10)

    weight, saved = fresh()
    weight.grad = torch.ones_like(weight)
    saved.step()
    assert bool(saved.state[weight]["compressed"])
    state_dict = saved.state_dict()
    state_dict["param_groups"][0].update(saved_group)
    weight, optimizer = fresh()
    with pytest.raises(ValueError, match=r"\(shape \(6, 5, 4, 3\)\): state was saved compressed, but with these "
                                         r"settings the parameter is uncompressed\. The state dict was saved for "
                                         r"another model or optimizer settings"):
        optimizer.load_state_dict(state_dict)
    assert not optimizer.state  # nothing loaded


def test_a_state_saved_compressed_for_a_parameter_with_one_long_mode_is_refused_by_name(monkeypatch):
    # a (1, 200) weight has one long mode: never compressed; its state is moved onto it from
    # an (8, 200) weight's compressed state of the same group
    weight = torch.nn.Parameter(torch.ones(8, 200))
    saved = TensorGRaD([weight], min_params=10)
    with monkeypatch.context() as patch:
        _old_routing(patch)
        weight.grad = torch.ones_like(weight)
        saved.step()
    state_dict = saved.state_dict()
    del state_dict["param_shapes"]  # as an older state dict, which lists none
    thin = torch.nn.Parameter(torch.ones(1, 200))
    optimizer = TensorGRaD([thin], min_params=10)
    with pytest.raises(ValueError, match=r"\(shape \(1, 200\)\): state was saved compressed, but with these "
                                         r"settings the parameter is uncompressed"):
        optimizer.load_state_dict(state_dict)
