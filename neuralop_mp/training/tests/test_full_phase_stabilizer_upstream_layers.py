"""A precision schedule's full phases on a model of upstream's own spectral layers (no
MixedPrecisionSpectralConv: only full phases are allowed) still switch the phase's stabilizer:
"full/tanh" runs upstream's tanh stabilizer, as an FNO built with it does, and the next phase's
stabilizer replaces it."""
import warnings

import torch
from neuralop.models import FNO

from neuralop_mp.training.trainer import MixedPrecisionTrainer

from .tiny import tiny_fno


def _upstream_fno_built_with(stabilizer, weights):
    model = FNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=6, n_layers=2, stabilizer=stabilizer)
    model.load_state_dict(weights)
    return model.eval()


def test_a_full_phase_with_tanh_runs_upstreams_stabilizer():
    model = tiny_fno(mixed_precision_layer=False, seed=4)
    weights = model.state_dict()
    x = 4 * torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(5))  # large: tanh bends it
    with torch.no_grad():
        with_tanh = _upstream_fno_built_with("tanh", weights)(x)
        without = _upstream_fno_built_with(None, weights)(x)
    assert (with_tanh - without).abs().max() > 1e-4  # the premise: tanh changes the output, far beyond the tolerance
    trainer = MixedPrecisionTrainer(model=model, n_epochs=2, precision_schedule="full:0.5/tanh,full:0.5",
                                    verbose=False)
    model.eval()
    for epoch, reference in [(0, with_tanh), (1, without)]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer.on_epoch_start(epoch)
        assert model.fno_blocks.stabilizer == ("tanh" if epoch == 0 else None)
        with torch.no_grad():
            torch.testing.assert_close(model(x), reference, rtol=1e-6, atol=1e-7)
