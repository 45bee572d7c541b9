"""Keeping freed CPU memory in the process (neuralop_mp/cpu_allocator.py).

The settings act on the whole process and cannot be undone, so each behaviour check
runs in a fresh interpreter; in this one the repository's conftest fakes glibc.
"""
import subprocess
import sys

import pytest

import neuralop_mp.cpu_allocator as cpu_allocator
from neuralop_mp.cpu_allocator import CPU_ALLOCATOR_MODES, set_cpu_allocator

# Allocates and frees a 64 MiB tensor (above glibc's largest mmap threshold, 32 MiB)
# 8 times after a warm-up and prints the minor page faults those 8 rounds took.
_FAULTS = """
import resource, sys, torch
from neuralop_mp.cpu_allocator import cpu_allocator_mode, set_cpu_allocator
print(set_cpu_allocator(sys.argv[1]), file=sys.stderr)
a = torch.randn(16 * 2**20)
def rounds():
    for _ in range(8):
        b = a * 2
        b.add_(1.0)
        del b
rounds()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
rounds()
print(cpu_allocator_mode(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode):
    out = subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True)
    applied, faults = out.stdout.split()
    return applied, int(faults)


_REAL_GLIBC = cpu_allocator._glibc()  # at import, before conftest's fake replaces it


@pytest.mark.slow  # starts Python interpreters of its own: the end-to-end tier (pyproject.toml)
@pytest.mark.skipif(_REAL_GLIBC is None, reason="'keep' needs glibc")
def test_keep_stops_the_page_faults_of_reallocating_a_freed_large_tensor():
    system_mode, system = _faults("system")
    keep_mode, keep = _faults("keep")
    assert (system_mode, keep_mode) == ("system", "keep")
    # with malloc as it is every round maps the 64 MiB afresh: 8 x 16384 4-KiB pages, or
    # 8 x 32 2-MiB pages with transparent huge pages always on; kept, the block is reused
    assert system > 8 * 16, system
    assert keep < system / 20, (keep, system)


def test_unknown_mode_names_the_allowed_ones():
    with pytest.raises(ValueError, match=r"Invalid cpu_allocator='cached'; allowed values: 'keep', 'system'"):
        set_cpu_allocator("cached")
    assert CPU_ALLOCATOR_MODES == ("keep", "system")


def test_without_glibc_keep_changes_nothing_and_says_why(monkeypatch):
    monkeypatch.setattr(cpu_allocator, "_state", {"mode": "system", "detail": "malloc as the system configures it"})
    monkeypatch.setattr(cpu_allocator, "_glibc", lambda: None)
    text = set_cpu_allocator("keep")
    assert cpu_allocator.cpu_allocator_mode() == "system"
    assert "'keep' needs glibc" in text


def test_system_after_keep_raises_instead_of_pretending(monkeypatch):
    monkeypatch.setattr(cpu_allocator, "_state", {"mode": "keep", "detail": "kept"})
    assert set_cpu_allocator("keep") == "kept"  # again: nothing more to do
    with pytest.raises(ValueError, match="cannot be restored in this process"):
        set_cpu_allocator("system")


def test_keep_sets_both_glibc_parameters_and_describes_itself():
    calls = type(cpu_allocator._glibc()).calls  # the repository conftest's stand-in for glibc
    calls.clear()
    text = set_cpu_allocator("keep")
    # M_MMAP_MAX = 0 (every block from the heap), M_TRIM_THRESHOLD at the largest int
    assert calls == [(-4, 0), (-1, 2**31 - 1)]
    assert cpu_allocator.cpu_allocator_mode() == "keep" and text.startswith("freed memory kept in the process")
    assert set_cpu_allocator("keep") == text and len(calls) == 2  # applied once


def test_a_refused_setting_leaves_malloc_as_it_was(monkeypatch):
    class Refusing:
        calls = []

        def mallopt(self, param, value):
            self.calls.append((param, value))
            return 0 if param == -1 else 1

    libc = Refusing()
    monkeypatch.setattr(cpu_allocator, "_glibc", lambda: libc)
    assert "glibc refused" in set_cpu_allocator("keep") and cpu_allocator.cpu_allocator_mode() == "system"
    assert libc.calls[-1] == (-4, 65536)  # mmap allowed again, glibc's default
