"""The python examples of docs/diagnose.md run as written."""
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[3] / "docs" / "diagnose.md"


def test_diagnose_doc_python_blocks_run(capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), {})
    printed = capsys.readouterr().out
    assert printed.split()[0] in ("full", "mixed")
    # the numbers the doc's comments show are the ones its seeded blocks print
    for shown in re.findall(r"print\(.*\)  # (float16 overflow margin [0-9.]+ < 16)", DOC.read_text()):
        assert shown in printed, (shown, printed)
