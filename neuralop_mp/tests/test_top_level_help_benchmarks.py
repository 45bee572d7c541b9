"""``neuralop-mp --help`` lists every benchmark ``neuralop-mp bench`` runs: its ``bench`` line had a
list of its own, which missed ``trainer`` once that benchmark was added."""
import re

from neuralop_mp.bench import cli as bench_cli
from neuralop_mp.cli import main


def test_the_bench_line_names_every_benchmark(capsys):
    assert main(["--help"]) == 0
    (line,) = [line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("bench ")]
    (listed,) = re.findall(r"neuralop-mp bench \{([^}]*)\}", line)
    assert listed.split(",") == list(bench_cli.BENCHMARKS)
    assert "trainer" in listed.split(",")
