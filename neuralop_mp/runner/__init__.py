"""Running neuraloperator's own training scripts with the plugin enabled.

- :mod:`.activation`: ``enable(...)`` / ``disable()`` / ``enabled(...)``, the one
  reversible switch (nothing is patched on import);
- :mod:`.intercept`: the stand-ins for ``get_model``, ``Trainer`` and the optimizers;
- :mod:`.offline`: upstream's dataset classes reading local files, never the network;
- :mod:`.static_check` and :mod:`.summary`: what we say before and after the script;
- :mod:`.cli`: ``neuralop-mp run SCRIPT.py [--mp.* ...] -- [script args]``.
"""
