"""Keeping freed CPU memory in the process (neuralop_mp/cpu_allocator.py).

The settings act on the whole process and cannot be undone, so each behaviour check
runs in a fresh interpreter.
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


@pytest.mark.skipif(cpu_allocator._glibc() is None, reason="'keep' needs glibc")
def test_keep_stops_the_page_faults_of_reallocating_a_freed_large_tensor():
    system_mode, system = _faults("system")
    keep_mode, keep = _faults("keep")
    assert (system_mode, keep_mode) == ("system", "keep")
    # with malloc as it is every round maps the 64 MiB afresh: 8 x 16384 4-KiB pages
    # (fewer with transparent huge pages); kept, the heap block is reused without faults
    assert system > 8 * 1000, system
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
