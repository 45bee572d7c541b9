"""A TensorGRaD kind that compresses no weight (every spectral weight below ``opt.tensorgrad_min_params``)
says so once, naming the threshold, the largest candidate's size and the option; it ran as AdamW silently."""
import warnings

import pytest
from neuralop.models import FNO

from neuralop_mp.optim.factory import create_optimizer


def _small_fno():
    # its spectral weights: 8 x 8 x 4 x 3 = 768 complex entries each
    return FNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=8, n_layers=1)


@pytest.mark.parametrize("kind", ["tensorgrad", "galore", "sparse"])
def test_a_kind_that_compresses_nothing_warns_once_naming_the_threshold(kind):
    with pytest.warns(UserWarning) as said:
        create_optimizer(_small_fno(), {"optimizer": kind})
    lines = [str(w.message) for w in said if "compresses no weight" in str(w.message)]
    assert lines == [f"opt.optimizer={kind!r} compresses no weight and keeps plain AdamW moments for all of them: "
                     "the largest candidate weight has 768 entries, below opt.tensorgrad_min_params=1000; set "
                     "opt.tensorgrad_min_params to 768 or less to compress it."]


def test_no_warning_where_a_weight_is_compressed_or_for_adamw():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        optimizer = create_optimizer(_small_fno(), {"optimizer": "tensorgrad", "tensorgrad_min_params": 768})
        create_optimizer(_small_fno(), {"optimizer": "adamw"})
    from neuralop_mp.optim.tensorgrad import TensorGRaD

    assert any(TensorGRaD.routes_to_compression(p, g) for g in optimizer.param_groups for p in g["params"])
