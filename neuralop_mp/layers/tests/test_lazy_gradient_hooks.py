"""The lazy weight gradient and gradient hooks: a hook of the user's on the weight makes
the product build the ordinary gradient, whoever consumes it; the consumer's own hooks
do not."""
import torch

from neuralop_mp.layers.lazy_weight_gradient import consume_weight_gradients
from neuralop_mp.layers.mode_matmul import dense_mode_product

SHAPE = (3, 4, 4, 3)  # (in, out, modes)


def _operands():
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(2, SHAPE[0], *SHAPE[2:], dtype=torch.cfloat, generator=gen)
    w = torch.nn.Parameter(torch.randn(SHAPE, dtype=torch.cfloat, generator=gen))
    g = torch.randn(2, SHAPE[1], *SHAPE[2:], dtype=torch.cfloat, generator=gen)
    return x, w, g


def _backward(x, w, g):
    dense_mode_product(x, w[:], None).backward(g)


def _post_accumulate(w, seen):
    return w.register_post_accumulate_grad_hook(lambda p: seen.append(None if p.grad is None else p.grad.clone()))


def test_a_users_post_accumulate_hook_gets_the_ordinary_gradient():
    """A consumer registered directly (no update in backward) is handed nothing while the
    weight has a post-accumulate hook of the user's (set after the consumer): the hook sees
    the ordinary gradient, which the weight holds. Once the hook is removed the gradient is
    handed over again. (Tensor hooks: test_update_in_backward_mends.)"""
    x, w, g = _operands()
    _backward(x, w, g)
    expected, w.grad = w.grad, None
    taken, seen = [], []
    handle = consume_weight_gradients(w, taken.append, lambda: True)
    hook = _post_accumulate(w, seen)
    _backward(x, w, g)
    assert taken == []
    assert len(seen) == 1 and torch.equal(seen[0], expected) and torch.equal(w.grad, expected)
    hook.remove()
    w.grad = None
    _backward(x, w, g)
    handle.remove()
    assert len(taken) == 1 and w.grad is None and len(seen) == 1


def test_the_consumers_own_hook_does_not_stop_the_hand_over():
    """A post-accumulate hook the consumer names as its own still runs (without a
    gradient) and the lazy gradient is handed over; another one beside it stops that."""
    x, w, g = _operands()
    taken, own_seen, users_seen = [], [], []
    own = _post_accumulate(w, own_seen)
    handle = consume_weight_gradients(w, taken.append, lambda: True, own_hooks=(own,))
    _backward(x, w, g)
    assert len(taken) == 1 and own_seen == [None] and w.grad is None
    _post_accumulate(w, users_seen)
    _backward(x, w, g)
    handle.remove()
    assert len(taken) == 1 and users_seen[0] is not None and own_seen[1] is not None


def test_removing_a_replaced_registration_keeps_the_newer_one():
    """A handle removes only its own registration: removing an older one (the same weight
    registered again) left the weight with no consumer, silently building ordinary gradients."""
    x, w, g = _operands()
    first, second = [], []
    old = consume_weight_gradients(w, first.append, lambda: True)
    new = consume_weight_gradients(w, second.append, lambda: True)
    old.remove()
    _backward(x, w, g)
    assert first == [] and len(second) == 1 and w.grad is None
    new.remove()
    _backward(x, w, g)
    assert len(second) == 1 and w.grad is not None
