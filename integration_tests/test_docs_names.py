"""The names the docs give a reader exist: dotted calls work after a plain ``import neuralop_mp``,
the tests docs/*.md cite as evidence are defined, and every ``neuralop-mp run`` flag is documented.
(A renamed test or a new flag left the docs pointing at nothing, unnoticed by the examples' run.)"""
import re
import subprocess
import sys
from pathlib import Path

import pytest

from neuralop_mp.runner.cli import KNOWN_FLAGS

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TEST_DIRS = [ROOT / "neuralop_mp", ROOT / "integration_tests"]


def _docs_text():
    return {path.relative_to(ROOT).as_posix(): path.read_text() for path in DOC_FILES}


@pytest.mark.slow  # starts Python interpreters of its own: the end-to-end tier (pyproject.toml)
def test_every_dotted_call_in_the_docs_works_after_a_plain_import():
    calls = sorted({m.group(1) for text in _docs_text().values()
                    for m in re.finditer(r"\b(neuralop_mp(?:\.[A-Za-z_]\w*)+)\(", text)})
    assert len(calls) > 10, calls  # the pattern still finds the docs' calls
    # a fresh process: in this one, earlier imports of submodules would set the attributes
    script = ("import sys, neuralop_mp\n"
              "for name in sys.argv[1:]:\n"
              "    obj = neuralop_mp\n"
              "    try:\n"
              "        for part in name.split('.')[1:]:\n"
              "            obj = getattr(obj, part)\n"
              "    except AttributeError as error:\n"
              "        print(name, '->', error)\n")
    result = subprocess.run([sys.executable, "-c", script, *calls], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "", f"doc calls that fail after `import neuralop_mp`:\n{result.stdout}"


def test_every_test_the_docs_cite_is_defined():
    defined = {m.group(1) for folder in TEST_DIRS for path in folder.rglob("test_*.py")
               for m in re.finditer(r"^\s*(?:async )?def (test_\w+)", path.read_text(), re.M)}
    defined |= {path.stem for folder in TEST_DIRS for path in folder.rglob("test_*.py")}  # a cited test file
    # config keys named test_* (data.test_resolutions) are not tests
    defined |= {m.group(1) for path in (ROOT / "configs").glob("*.py")
                for m in re.finditer(r"^\s+(test_\w+)\s*:", path.read_text(), re.M)}
    cited = {(doc, name) for doc, text in _docs_text().items()
             for name in re.findall(r"`(test_\w+)`", text) if not name.endswith("_")}
    assert len(cited) > 50  # the docs cite their evidence by test name
    missing = sorted((doc, name) for doc, name in cited if name not in defined)
    assert not missing, f"tests the docs cite that no test file defines: {missing}"


def test_every_flag_of_run_is_in_its_flag_table():
    text = (ROOT / "docs" / "upstream_scripts.md").read_text()
    written = set(re.findall(r"`(--mp\.[\w-]+)", text)) | set(re.findall(r"`(_\w+)`", text))
    missing = [flag for flag in KNOWN_FLAGS if flag not in written
               and not (flag.startswith("--mp.tensorgrad_") and flag[len("--mp.tensorgrad"):] in written)]
    assert not missing, f"neuralop-mp run flags docs/upstream_scripts.md does not name: {missing}"
