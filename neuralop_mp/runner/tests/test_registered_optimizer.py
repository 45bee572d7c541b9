"""An optimizer added with ``register_optimizer`` (which ``train`` builds) is one that ``enable()``
and ``neuralop-mp run --mp.optimizer`` accept: their check reads the factory's registry."""
import neuralop
import pytest
import torch

import neuralop_mp
from neuralop_mp.optim import factory
from neuralop_mp.runner.cli import UsageError, parse_args

NAME = "toy_sgd_for_runner_tests"


@pytest.fixture
def toy_optimizer():
    factory.register_optimizer(NAME, "plain SGD (a test's)")(
        lambda model, common, settings: torch.optim.SGD(model.parameters(), lr=common["lr"]))
    yield NAME
    factory._REGISTRY.pop(NAME)  # the registry has no unregister: leave it as it was


def test_enable_accepts_a_registered_optimizer_and_the_factory_gets_it(toy_optimizer, fake_parts, tiny_config):
    with neuralop_mp.enabled(optimizer=toy_optimizer) as report:
        from neuralop.training import AdamW

        AdamW(neuralop.get_model(tiny_config).parameters(), lr=1e-3)
    ((_, config),) = fake_parts["create_optimizer"]
    assert config["optimizer"] == toy_optimizer
    assert [o["kind"] for o in report.optimizers] == [toy_optimizer]


def test_run_accepts_it_and_lists_it_when_refusing_another(toy_optimizer):
    _, options, _ = parse_args(["t.py", "--mp.optimizer", toy_optimizer])
    assert options["optimizer"] == toy_optimizer
    with pytest.raises(UsageError, match=rf"'nope'.*{toy_optimizer}"):
        parse_args(["t.py", "--mp.optimizer", "nope"])


def test_runs_usage_lists_it(toy_optimizer, capsys):
    from neuralop_mp.runner.cli import main

    assert main(["--help"]) == 0
    listed = capsys.readouterr().out.split("--mp.optimizer {", 1)[1].split("}", 1)[0].split(",")
    assert listed == list(factory.list_optimizers()) and toy_optimizer in listed
