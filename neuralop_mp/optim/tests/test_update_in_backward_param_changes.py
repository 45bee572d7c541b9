"""Update in backward after the optimizer's parameters change: a parameter unfrozen, or
added with add_param_group, after the hooks were set has no hook. It is refused by the first
hook of the next backward, before any step (it would otherwise keep its gradient and be
stepped again by every hook); enabling again trains bitwise as the ordinary step (CPU)."""
import pytest
import torch

from neuralop_mp.optim.factory import create_optimizer
from neuralop_mp.optim.tests.test_update_in_backward import (HALF_CONFIG, OPT_CONFIGS, _assert_same, _batches,
                                                             _count_lazy_steps, _half_model, _model)
from neuralop_mp.optim.update_in_backward import enable_update_in_backward
from neuralop_mp.tests.exact import equal_exactly

N_STEPS = 3

# name: (model, optimizer of a module); TensorGRaD "half" steps its spectral weights from lazy gradients
KINDS = {
    "sgd": (_model, lambda module: torch.optim.SGD(module.parameters(), lr=0.1)),
    "adamw": (_model, lambda module: create_optimizer(module, OPT_CONFIGS["adamw"])),
    "tensorgrad": (_model, lambda module: create_optimizer(module, OPT_CONFIGS["tensorgrad"])),
    "tensorgrad_half": (_half_model, lambda module: create_optimizer(module, HALF_CONFIG)),
}


def _set_up(kind, change):
    """A model and its optimizer, and ``apply()``, the change made after the hooks are set:
    "unfreeze" the projection, frozen after the optimizer was built (create_optimizer leaves
    out a parameter frozen before); or "add" the lifting and projection, left out of the
    optimizer, as a param group."""
    make_model, make_optimizer = KINDS[kind]
    model = make_model()
    late = list(model.projection.parameters())
    if change == "unfreeze":
        optimizer = make_optimizer(model)
        for p in late:
            p.requires_grad_(False)

        def apply():
            for p in late:
                p.requires_grad_(True)
    else:
        late += list(model.lifting.parameters())
        optimizer = make_optimizer(model.fno_blocks)

        def apply():
            optimizer.add_param_group({"params": late})
    return model, optimizer, apply


def _steps(model, optimizer, batches):
    for x, y in batches:
        optimizer.zero_grad(set_to_none=True)
        ((model(x) - y) ** 2).mean().backward()
        optimizer.step()


@pytest.mark.parametrize("change", ["unfreeze", "add"])
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_parameter_without_a_hook_is_refused_then_enabling_again_is_the_ordinary_step(kind, change):
    batches = _batches(N_STEPS)
    ref_model, ref_opt, apply = _set_up(kind, change)
    apply()
    _steps(ref_model, ref_opt, batches)

    model, opt, apply = _set_up(kind, change)
    lazy_calls = _count_lazy_steps(opt) if kind == "tensorgrad_half" else []
    hooks = enable_update_in_backward(opt)
    apply()
    before = [p.detach().clone() for p in model.parameters()]
    x, y = batches[0]
    opt.zero_grad(set_to_none=True)
    with pytest.raises(RuntimeError, match=r"group \d+ parameter \d+ \(.*have no update-in-backward hook "
                                           r"\(frozen when .* or added with add_param_group since\).*"
                                           r"call enable_update_in_backward\(optimizer\) again") as error:
        ((model(x) - y) ** 2).mean().backward()
    assert "\n" not in str(error.value)
    del error  # its traceback holds the refused backward's graph (see the lazy count below)
    # refused before any step: no weight moved, no state made
    assert all(equal_exactly(a, b) for a, b in zip(before, model.parameters()))
    assert not any(opt.state.values()) and not lazy_calls

    hooks.remove()
    hooks = enable_update_in_backward(opt)
    _steps(model, opt, batches)
    hooks.remove()
    if kind == "tensorgrad_half":
        # torch keeps the refused backward's graph until the next backward ends: the first
        # step finds an older use of the spectral weights pending and builds their gradients
        assert lazy_calls == ["LazyWeightGradient"] * 2 * (N_STEPS - 1)
    _assert_same(ref_model, ref_opt, model, opt)


def test_only_lazily_stepped_weights_refuse_before_their_step_is_queued():
    """Only the spectral weights train and the first one was frozen when the hooks were set:
    the first thing backward reaches is the second weight's lazy gradient, which is refused
    there (its step would run when backward finishes)."""
    model = _half_model()
    convs = model.fno_blocks.convs
    opt = create_optimizer(model, HALF_CONFIG)
    for p in model.parameters():
        p.requires_grad_(p is convs[1].weight.tensor)
    calls = _count_lazy_steps(opt)
    enable_update_in_backward(opt)
    convs[0].weight.tensor.requires_grad_(True)
    x, y = _batches(1)[0]
    with pytest.raises(RuntimeError, match=r"group 1 parameter 0 .* have no update-in-backward hook"):
        ((model(x) - y) ** 2).mean().backward()
    assert calls == [] and not any(opt.state.values())


def test_trainer_enables_again_at_each_train_call():
    """The trainer sets the hooks at each train(): a head unfrozen between two calls is
    trained as by the ordinary run."""
    from neuralop_mp import MixedPrecisionTrainer
    from neuralop_mp.training.tests.tiny import (assert_same, loss, optimizer_and_scheduler, snapshot, tiny_data,
                                                 tiny_fno)

    results = []
    for update_in_backward in (False, True):
        model = tiny_fno()
        for p in model.projection.parameters():
            p.requires_grad_(False)
        optimizer, scheduler = optimizer_and_scheduler(model)
        trainer = MixedPrecisionTrainer(model=model, n_epochs=1, update_in_backward=update_in_backward,
                                        verbose=False)
        train, test = tiny_data()
        torch.manual_seed(5)  # the loader's shuffle
        trainer.train(train, test, optimizer, scheduler, training_loss=loss())
        for p in model.projection.parameters():
            p.requires_grad_(True)
        trainer.train(train, test, optimizer, scheduler, training_loss=loss())
        results.append(snapshot(model, optimizer))
    assert_same(results[0][0], results[1][0])
    assert_same(results[0][1], results[1][1])
