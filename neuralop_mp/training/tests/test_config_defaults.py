"""The ``opt`` config section repeats the defaults of the MixedPrecisionTrainer keywords it
shares a name with (``train`` passes the config's value, the Python API gets the keyword's):
a test keeps them equal, so the command line and the Python API cannot drift apart."""
import inspect

from configs.opt import OptimizationConfig
from configs.zencfg_compat import config_fields
from neuralop_mp import MixedPrecisionTrainer


def test_opt_fields_named_as_trainer_keywords_have_the_trainer_defaults():
    keywords = {name: p.default for name, p in inspect.signature(MixedPrecisionTrainer.__init__).parameters.items()
                if p.default is not inspect.Parameter.empty}
    fields = {name: default for name, (_, default) in config_fields(OptimizationConfig).items()}
    shared = fields.keys() & keywords.keys()
    # the loop's own settings, each read by train from the config section
    assert {"eval_interval", "loss_scaling", "max_consecutive_skips", "update_in_backward",
            "precision_schedule"} <= shared
    assert {name: fields[name] for name in shared} == {name: keywords[name] for name in shared}
