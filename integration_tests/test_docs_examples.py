"""Every code example of README.md and docs/*.md runs (at test size), so the docs cannot drift from the API.

How a block is run, shrunk or skipped (with its reason) is written next to it in the
markdown (see :mod:`integration_tests.docs_examples`).
"""
from pathlib import Path

import pytest

from .docs_examples import (
    DocsExampleError,
    extract_blocks,
    run_bash_block,
    run_python_blocks,
)

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _runnable(path, language):
    return [b for b in extract_blocks(path) if b.language == language and b.skip_reason is None]


def _files_with(language):
    files = [p for p in DOC_FILES if _runnable(p, language)]
    return pytest.mark.parametrize("path", files, ids=[p.relative_to(ROOT).as_posix() for p in files])


@_files_with("python")
def test_python_examples_run(path, tmp_path, monkeypatch):
    blocks = _runnable(path, "python")
    monkeypatch.chdir(tmp_path)  # examples that write files (checkpoints) write here
    run_python_blocks(blocks)


@pytest.mark.slow  # each block is a fresh process tree of neuralop-mp commands: the end-to-end tier
@_files_with("bash")
def test_bash_examples_run(path, tmp_path):
    for block in _runnable(path, "bash"):
        run_bash_block(block, tmp_path)


def test_every_doc_example_is_run_or_says_why_not():
    for path in DOC_FILES:
        for block in extract_blocks(path):
            if block.language in ("python", "bash") and block.skip_reason is not None:
                assert len(block.skip_reason.split()) >= 3, f"{block.where}: give a real reason to skip"


# ---------------------------------------------------------------- the extractor itself
BROKEN_DOC = """# A page
Some text.

<!-- docs-example: tiny: `41` -> `40` -->
```python
value = 41
```

```python
assert value + 1 == 42, "the example is wrong"
```
"""


def test_a_broken_example_fails_naming_its_line(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(BROKEN_DOC)
    blocks = extract_blocks(page)
    assert [(b.line, b.language) for b in blocks] == [(5, "python"), (9, "python")]
    # the replacement breaks the first block's value, so the second block's check fails
    with pytest.raises(DocsExampleError, match=r"page.md:9: the example raised AssertionError: the example is wrong"):
        run_python_blocks(blocks)
    blocks[0].replacements = []  # unbroken, the page runs, and names carry over between blocks
    assert run_python_blocks(blocks)["value"] == 41


@pytest.mark.parametrize("directive, message", [
    ("<!-- docs-example: tiny: `not in the code` -> `x` -->", "does not occur"),
    ("<!-- docs-example: skip: -->", "'skip' needs a reason"),
    ("<!-- docs-example skip: no colon after the name -->", "malformed docs-example directive"),
    ("<!-- docs-example: tiny: n_train=5 -->", "`old` -> `new` pairs"),
    ("<!-- docs-example: skipp: typo -->", "unknown docs-example directive 'skipp'"),
])
def test_malformed_directives_are_errors(tmp_path, directive, message):
    page = tmp_path / "page.md"
    page.write_text(f"{directive}\n```python\nraise RuntimeError('ran')\n```\n")
    with pytest.raises(DocsExampleError, match=message):
        run_python_blocks(extract_blocks(page))


def test_a_directive_away_from_a_fence_is_an_error(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("<!-- docs-example: skip: slow on a laptop -->\nSome text.\n```python\npass\n```\n")
    with pytest.raises(DocsExampleError, match="page.md:1: .*not right before a code fence"):
        extract_blocks(page)


def test_a_failing_bash_example_fails(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("```bash\necho first line runs\nfalse\necho never reached\n```\n")
    (block,) = extract_blocks(page)
    with pytest.raises(DocsExampleError, match="exit status 1\nfirst line runs\n\n"):
        run_bash_block(block, tmp_path)
