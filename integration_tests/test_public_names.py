"""Every public name of ``neuralop_mp`` (``__all__``, the lazy table) resolves after a plain
``import neuralop_mp`` and is named in the docs. (Five exports were in no doc, unnoticed.)"""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # every test starts Python interpreters of its own: the end-to-end tier (pyproject.toml)

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _code_text():
    """The docs' code: fenced blocks and inline ``code`` spans, where a reader finds a name to call."""
    parts = []
    for path in DOC_FILES:
        text = path.read_text()
        parts += re.findall(r"^```[^\n]*\n(.*?)^```", text, re.M | re.S)
        parts += re.findall(r"`([^`\n]+)`", re.sub(r"^```.*?^```", "", text, flags=re.M | re.S))
    return "\n".join(parts)


def _public_names():
    """``(__all__, the lazy table's names, what failed to resolve)`` from a fresh process: in this
    one, earlier imports of submodules would set the attributes."""
    script = ("import json, neuralop_mp\n"
              "failed = []\n"
              "for name in neuralop_mp.__all__ + sorted(neuralop_mp._LAZY):\n"
              "    try:\n"
              "        getattr(neuralop_mp, name)\n"
              "    except Exception as error:\n"
              "        failed.append(f'{name}: {type(error).__name__}: {error}')\n"
              "print(json.dumps([neuralop_mp.__all__, sorted(neuralop_mp._LAZY), failed]))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_every_public_name_resolves_and_is_named_in_the_docs():
    exported, lazy, failed = _public_names()
    assert set(lazy) <= set(exported) and len(lazy) > 30
    assert failed == [], f"public names that do not resolve after `import neuralop_mp`: {failed}"
    code = _code_text()
    # as code, not as a word of the prose ("precision", "enable"): `set_precision(model, ...)`,
    # `neuralop_mp.precision(...)`, a name in an import; not a part of a longer name
    undocumented = [name for name in exported if name not in ("__version__",)
                    and not re.search(rf"(?<![\w]){re.escape(name)}(?![\w])", code)]
    assert undocumented == [], f"public names no doc (README.md, docs/*.md) names as code: {undocumented}"
