"""``parse_typed_overrides`` reads a command line once: the keys typed now are those of the parse
the config loads with (a resume's typed tokens, another list, are parsed on their own)."""
import pytest

from neuralop_mp import option_check
from neuralop_mp.configs import loading


@pytest.fixture
def parses(monkeypatch):
    calls, real = [], loading.parse_overrides
    monkeypatch.setattr(loading, "parse_overrides", lambda args, **kw: calls.append(list(args)) or real(args, **kw))
    return calls


def test_a_train_command_line_is_parsed_once(parses):
    tokens = ["--model.stabilizer", "none", "--opt.n_epochs", "2"]
    assert option_check.parse_typed_overrides(tokens) == {"model.stabilizer": "off", "opt.n_epochs": "2"}
    assert parses == [tokens]


def test_a_resume_reads_its_typed_tokens_apart_and_a_recorded_none_stays_the_default(parses):
    recorded, given = ["--model.stabilizer", "none"], ["--opt.n_epochs", "2"]
    assert option_check.parse_typed_overrides([*recorded, *given], given) == {"model.stabilizer": "none",
                                                                             "opt.n_epochs": "2"}
    assert option_check.parse_typed_overrides([*given, "--model.stabilizer", "null"], ["--model.stabilizer",
                                                                                       "null"]) == {
        "opt.n_epochs": "2", "model.stabilizer": "off"}
    assert len(parses) == 4


def test_a_bad_command_line_is_refused_as_before():
    with pytest.raises(ValueError, match="Missing value for option --model.stabilizer"):
        option_check.parse_typed_overrides(["--model.stabilizer", "--opt.n_epochs", "2"])
