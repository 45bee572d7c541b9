"""SIGTERM handled as Ctrl-C within terminate_as_interrupt, and the exit statuses of both."""
import os
import signal
import time

import pytest

from neuralop_mp.signals import Terminated, exit_status, interrupt_name, terminate_as_interrupt


def test_sigterm_raises_a_keyboard_interrupt_within_the_block_and_the_handler_is_restored():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated) as caught:
        with terminate_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(10)  # the handler raises here at the latest
    assert isinstance(caught.value, KeyboardInterrupt)  # every `except KeyboardInterrupt` handles it
    assert signal.getsignal(signal.SIGTERM) is before
    assert (exit_status(caught.value), interrupt_name(caught.value)) == (143, "terminated (SIGTERM)")
    assert (exit_status(KeyboardInterrupt()), interrupt_name(KeyboardInterrupt())) == (130, "interrupted (Ctrl-C)")


def test_an_ignored_sigterm_stays_ignored():
    before = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        with terminate_as_interrupt():
            assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGTERM)  # ignored: nothing raised
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, before)
