"""The runner reads a script's config alike from zencfg objects, their ``to_dict()`` and plain dicts.

Upstream's scripts call ``get_model(config.to_dict())``: under zencfg 0.7 that is a
``Bunch`` whose attribute access raises KeyError for a missing key (so
``hasattr(bunch, "to_dict")`` raises), under 1.0 a ``Bunch`` with ``_config_name``
keys. ``integration_tests/test_zencfg_versions.py`` runs this file under the
other zencfg version too.
"""
import pytest

from neuralop_mp.configs import load_config, read_key, section_dict
from neuralop_mp.runner.intercept import plugin_config


def _forms(config):
    """The three shapes a script may hand to get_model."""
    plain = {name: section_dict(getattr(config, name)) for name in ("model", "opt", "patching")}
    return {"config": config, "to_dict": config.to_dict(), "dict": plain}


@pytest.mark.parametrize("form", ["config", "to_dict", "dict"])
def test_plugin_config_reads_every_form_of_a_config(form):
    config = load_config("darcy", {"model.hidden_channels": "12", "patching.levels": "0"})
    given = _forms(config)[form]
    built = plugin_config(given, {"precision": "mixed", "half_dtype": "bfloat16", "stabilizer": "tanh",
                                  "schedule": "half:0.5,full:0.5"})
    model = built["model"]
    assert type(model) is dict and "_config_name" not in model
    assert model["hidden_channels"] == 12 and model["model_arch"] == "fno"
    assert (model["fno_block_precision"], model["half_dtype"], model["stabilizer"]) == ("mixed", "bfloat16", "tanh")
    assert built["opt"]["precision_schedule"] == "half:0.5,full:0.5"
    assert built["patching"] == {"levels": 0, "padding": 0.0, "stitching": False}
    # the script's own config is left as it was
    assert read_key(read_key(given, "model"), "fno_block_precision") == "full"


def test_a_missing_model_section_is_named():
    with pytest.raises(ValueError, match="no 'model' section"):
        plugin_config(load_config("darcy").to_dict()["opt"], {})


def test_read_key_default_for_a_missing_key_of_any_form():
    config = load_config("darcy")
    for form in _forms(config).values():
        assert read_key(form, "no_such_section", "absent") == "absent"
        assert read_key(read_key(form, "opt"), "n_epochs") == config.opt.n_epochs
