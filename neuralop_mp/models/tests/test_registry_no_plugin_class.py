"""An architecture without a mixed-precision version (fnogno, gino, uqno) asked for our layer by a key
alone is refused naming that key and its default: it was told it "can only run in full precision
(fno_block_precision='full', no schedule)", which it already was."""
import pytest

import neuralop_mp

ARCHS = ["fnogno", "gino", "uqno"]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("key, value, default", [
    ("half_dtype", "bfloat16", "'auto'"),
    ("stabilizer", "tanh", "None"),
    ("spectral_weight_dtype", "complex32", "'complex64'"),
    ("autocast_scope", "model", "'auto'"),
])
def test_a_key_alone_is_named_with_its_default(arch, key, value, default):
    with pytest.raises(ValueError) as refused:
        neuralop_mp.get_model({"model": {"model_arch": arch, "data_channels": 1, key: value}})
    message = str(refused.value)
    assert message.startswith(f"model.model_arch={arch!r} (")
    assert f"has no mixed-precision version: it runs as upstream's model, with the plugin's keys at their " \
           f"defaults, and the config sets model.{key}={value!r}. Leave it out (default: model.{key}={default}); " \
           "mixed precision is available for: fno, tfno, uno." in message, message
    assert "fno_block_precision='full', no schedule" not in message


def test_several_keys_and_a_schedule_are_all_named():
    config = {"model": {"model_arch": "uqno", "data_channels": 1, "fno_block_precision": "half",
                        "half_dtype": "float16"}, "opt": {"precision_schedule": "half:0.5,full:0.5"}}
    with pytest.raises(ValueError) as refused:
        neuralop_mp.get_model(config)
    message = str(refused.value)
    # as given: not the stabilizer "tanh" that "half" in float16 would be filled in with
    assert "the config sets model.fno_block_precision='half', model.half_dtype='float16', " \
           "opt.precision_schedule='half:0.5,full:0.5'. Leave them out (defaults: model.fno_block_precision='full', " \
           "model.half_dtype='auto');" in message, message
    assert "stabilizer" not in message


def test_a_schedule_alone_is_named():
    config = {"model": {"model_arch": "uqno", "data_channels": 1}, "opt": {"precision_schedule": "mixed"}}
    with pytest.raises(ValueError, match=r"the config sets opt\.precision_schedule='mixed'\. Leave it out; mixed"):
        neuralop_mp.get_model(config)


def test_a_caller_forcing_the_layer_is_told_the_precision_the_arch_runs_in():
    with pytest.raises(ValueError, match=r"has no mixed-precision version, so it can only run in full precision"):
        neuralop_mp.get_model({"model": {"model_arch": "uqno", "data_channels": 1}}, mixed_precision_layer=True)
