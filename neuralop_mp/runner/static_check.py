"""Reading a script's source before running it: what the plugin will and will not reach.

The plugin intercepts names (``get_model``, ``Trainer``, ``AdamW``, upstream's
dataset classes). A script that builds its model by calling ``FNO(...)``
directly, trains with its own loop, or uses another optimizer runs without the
corresponding part of the plugin. We say so before the script starts rather than
let it run silently without the plugin; :func:`neuralop_mp.runner.summary.end_check`
confirms at the end from what was actually intercepted.
"""
import ast
from dataclasses import dataclass, field

# upstream model classes a script could construct directly, bypassing get_model
DIRECT_MODEL_CLASSES = ("FNO", "TFNO", "UNO", "SFNO", "UQNO", "LocalNO", "CODANO", "FNOGNO", "GINO")
# upstream trainers that are not neuralop.Trainer (they keep subclassing the original)
OTHER_TRAINERS = ("IncrementalFNOTrainer",)
# optimizers the plugin can stand in for, and which of them need --mp.optimizer
INTERCEPTED_OPTIMIZERS = ("AdamW", "Adam")
# upstream loaders and dataset classes whose files the plugin reads offline
OFFLINE_LOADERS = (
    "load_darcy_flow_small",
    "load_darcy_pt",
    "DarcyDataset",
    "load_navier_stokes_pt",
    "NavierStokesDataset",
    "load_mini_burgers_1dtime",
    "Burgers1dTimeDataset",
)


@dataclass
class ScriptScan:
    """Names a script calls, as far as its source shows."""

    calls: set = field(default_factory=set)

    @property
    def uses_get_model(self):
        return "get_model" in self.calls

    @property
    def uses_trainer(self):
        return "Trainer" in self.calls

    @property
    def direct_models(self):
        return sorted(c for c in self.calls if c in DIRECT_MODEL_CLASSES)

    @property
    def other_trainers(self):
        return sorted(c for c in self.calls if c in OTHER_TRAINERS)

    @property
    def optimizers(self):
        return sorted(c for c in self.calls if c in INTERCEPTED_OPTIMIZERS or c.endswith(("SGD", "Adagrad", "RMSprop")))

    @property
    def loaders(self):
        return sorted(c for c in self.calls if c in OFFLINE_LOADERS)


def _called_name(func):
    """``f`` for ``f(...)``, ``C`` for ``a.b.C(...)``."""
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def scan_source(source, filename="<script>"):
    """Collect the names of everything the script calls (by the last part of the name)."""
    tree = ast.parse(source, filename=filename)
    scan = ScriptScan()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = _called_name(node.func)
            if name:
                scan.calls.add(name)
    return scan


def start_warnings(scan, options):
    """Warnings to print before the script runs, one string per thing we cannot reach."""
    warnings = []
    wants_precision = options.get("precision") not in (None, "full") or options.get("schedule") is not None
    if not scan.uses_get_model:
        what = (
            f"builds its model directly ({', '.join(n + '(...)' for n in scan.direct_models)})"
            if scan.direct_models
            else "never calls get_model"
        )
        effect = (
            "the mixed-precision layer cannot be injected and the requested precision will NOT be applied"
            if wants_precision
            else "its model keeps upstream's spectral layer"
        )
        warnings.append(f"the script {what}: {effect}.")
    if not scan.uses_trainer:
        extra = f" (it uses {', '.join(scan.other_trainers)}, which the plugin does not replace)" if scan.other_trainers else ""
        warnings.append(
            "the script never creates neuralop.Trainer" + extra + ": no precision schedule, "
            "loss scaling or per-epoch summary from the plugin."
        )
    if options.get("optimizer") is not None:
        unreachable = [o for o in scan.optimizers if o not in INTERCEPTED_OPTIMIZERS]
        if not any(o in INTERCEPTED_OPTIMIZERS for o in scan.optimizers):
            warnings.append(
                f"--mp.optimizer {options['optimizer']}: the script creates no Adam/AdamW optimizer "
                f"that the plugin can replace{' (it uses ' + ', '.join(unreachable) + ')' if unreachable else ''}."
            )
    if options.get("data_root") and not scan.loaders:
        warnings.append(
            "--mp.data-root: the script uses none of upstream's Darcy / Navier-Stokes / Burgers "
            "loaders, so its data folder cannot be redirected."
        )
    return warnings


def describe_plan(scan):
    """One line naming what the plugin will intercept in this script."""
    parts = []
    parts.append("get_model" if scan.uses_get_model else "no get_model")
    parts.append("Trainer" if scan.uses_trainer else "no Trainer")
    reachable = [o for o in scan.optimizers if o in INTERCEPTED_OPTIMIZERS]
    parts.append(", ".join(reachable) if reachable else "no Adam/AdamW")
    parts.append(", ".join(scan.loaders) if scan.loaders else "no upstream loader")
    return "; ".join(parts)
