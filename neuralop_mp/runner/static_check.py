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
# the plugin's own classes a script can build its model with, bypassing get_model but not the
# mixed-precision layer (MixedPrecisionFNO(...), FNO(..., conv_module=MixedPrecisionSpectralConv))
PLUGIN_CLASSES = ("MixedPrecisionFNO", "MixedPrecisionTFNO", "MixedPrecisionUNO", "MixedPrecisionSpectralConv")
# the keywords upstream's models take a spectral layer class by (FNO, TFNO, FNOBlocks; FNOGNO's and GINO's)
LAYER_CLASS_KEYWORDS = ("conv_module", "fno_conv_module")
# upstream trainers the plugin replaces while enabled (runner/activation.py)
TRAINERS = ("Trainer", "IncrementalFNOTrainer")
# the optimizer the plugin stands in for (neuralop.training.AdamW; torch.optim is never touched)
INTERCEPTED_OPTIMIZERS = ("AdamW",)
OPTIMIZER_NAMES = ("AdamW", "Adam", "SGD", "Adagrad", "RMSprop")
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
    # optimizer calls by where their name comes from, e.g. "torch.optim.Adam", "neuralop.training.AdamW"
    optimizer_calls: set = field(default_factory=set)
    # the plugin's classes the script builds with (called, or given as conv_module=): not those it only
    # imports or checks with isinstance, which build nothing (see _built_plugin_classes)
    plugin_classes: set = field(default_factory=set)

    @property
    def uses_get_model(self):
        return "get_model" in self.calls

    @property
    def uses_trainer(self):
        return any(name in self.calls for name in TRAINERS)

    @property
    def direct_models(self):
        return sorted(c for c in self.calls if c in DIRECT_MODEL_CLASSES)

    @property
    def optimizers(self):
        """Optimizer class names the script calls (last part of the name)."""
        return sorted({c.rpartition(".")[2] for c in self.optimizer_calls})

    @property
    def torch_optimizers(self):
        """Optimizers the script builds from ``torch.optim`` (kept as they are)."""
        return sorted(c for c in self.optimizer_calls if c.startswith(("torch.", "optim.")))

    @property
    def replaceable_optimizers(self):
        """Optimizer calls the plugin replaces: ``AdamW`` not taken from ``torch.optim``."""
        return sorted(
            c for c in self.optimizer_calls
            if c.rpartition(".")[2] in INTERCEPTED_OPTIMIZERS and c not in self.torch_optimizers
        )

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


def _dotted_name(func):
    """``a.b.C`` for ``a.b.C(...)``, ``C`` for ``C(...)``, None for anything else."""
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if not isinstance(func, ast.Name):
        return None
    return ".".join([func.id, *reversed(parts)])


def _plugin_class_aliases(tree, imported):
    """Local name -> plugin class name, for every name the source leaves bound to a plugin class:
    ``from neuralop_mp import MixedPrecisionFNO as MPF``, ``cls = neuralop_mp.MixedPrecisionFNO`` and
    ``class Net(MixedPrecisionFNO)`` (calling ``Net`` builds the plugin's layers too).

    ``imported`` maps local names to ``module.name`` (:func:`scan_source` reads the imports once).
    Assignments and class statements are read in source order and a name's last one decides:
    ``cls = MixedPrecisionFNO; cls = FNO`` leaves ``cls`` an upstream class. Branches and scopes are
    not told apart: a start warning, not a proof.
    """
    aliases = {name: name for name in PLUGIN_CLASSES}  # as imported (or star-imported) under its own name
    aliases.update({local: dotted.rpartition(".")[2] for local, dotted in imported.items()
                    if dotted.rpartition(".")[2] in PLUGIN_CLASSES})
    bindings = [node for node in ast.walk(tree) if isinstance(node, (ast.Assign, ast.AnnAssign, ast.ClassDef))]
    for node in sorted(bindings, key=lambda n: (n.lineno, n.col_offset)):  # ast.walk is breadth-first
        if isinstance(node, ast.ClassDef):
            # a class deriving from a plugin class (directly or through an earlier such class) is one
            _bind(aliases, node.name, next(filter(None, (_named_plugin_class(b, aliases) for b in node.bases)), None))
            continue
        named = _named_plugin_class(node.value, aliases) if node.value is not None else None
        for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
            if isinstance(target, ast.Name):
                _bind(aliases, target.id, named)
            else:  # `a, b = ...`: not paired up, each name it binds is taken as rebound to something else
                for name in ast.walk(target):
                    if isinstance(name, ast.Name) and isinstance(name.ctx, ast.Store):
                        _bind(aliases, name.id, None)
    return aliases


def _bind(aliases, name, named):
    """Record that ``name`` now names the plugin class ``named`` (None: something else)."""
    if named:
        aliases[name] = named
    else:
        aliases.pop(name, None)  # rebound: calling it builds no plugin class


def _named_plugin_class(expr, aliases):
    """The plugin class ``expr`` names (``MixedPrecisionFNO``, ``neuralop_mp.MixedPrecisionFNO``, an alias), or None."""
    if isinstance(expr, ast.Name):
        return aliases.get(expr.id)
    if isinstance(expr, ast.Attribute) and expr.attr in PLUGIN_CLASSES:
        return expr.attr
    return None


def _built_plugin_classes(tree, imported):
    """The plugin classes the source builds something with: a call of the class (``MixedPrecisionFNO(...)``,
    ``neuralop_mp.MixedPrecisionFNO(...)``, ``MixedPrecisionFNO.from_checkpoint(...)``, a subclass's call),
    the class given as a layer keyword (``FNO(..., conv_module=MixedPrecisionSpectralConv)``) or as the
    first argument of ``partial``.

    A class only imported, named in ``isinstance(model, MixedPrecisionFNO)`` or given to another keyword
    (``log(kind=MixedPrecisionFNO)``) builds nothing: counted, it made the start check say that a script
    building upstream's model builds the plugin's layers itself.
    """
    aliases = _plugin_class_aliases(tree, imported)
    built = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr == "from_checkpoint":
            func = func.value  # the classmethod upstream's models build from a checkpoint with
        given = [kw.value for kw in node.keywords if kw.arg in LAYER_CLASS_KEYWORDS]
        if _called_name(node.func) == "partial" and node.args:
            given.append(node.args[0])
        built.update(filter(None, [_named_plugin_class(e, aliases) for e in [func, *given]]))
    return built


def scan_source(source, filename="<script>"):
    """Collect the names of everything the script calls (by the last part of the name)."""
    tree = ast.parse(source, filename=filename)
    scan = ScriptScan()
    imported = {}  # local name -> "module.name" of `from module import name`
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                imported[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    scan.plugin_classes = _built_plugin_classes(tree, imported)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = _called_name(node.func)
            if name:
                scan.calls.add(name)
            if name in OPTIMIZER_NAMES:
                dotted = _dotted_name(node.func) or name
                head, _, rest = dotted.partition(".")
                origin = imported.get(head)
                scan.optimizer_calls.add(f"{origin}.{rest}" if origin and rest else origin or dotted)
    return scan


def start_warnings(scan, options):
    """Warnings to print before the script runs, one string per thing we cannot reach."""
    warnings = []
    wants_precision = options.get("precision") not in (None, "full") or options.get("schedule") is not None
    if not scan.uses_get_model and scan.plugin_classes:
        # the script builds the plugin's layers itself: the trainer's schedule can switch them
        if wants_precision:
            effect = ("the plugin's Trainer switches them to the requested precision unless the script passes "
                      "its own precision_schedule (the summary says which)" if scan.uses_trainer else
                      "without a Trainer the plugin switches nothing: the requested precision will NOT be applied "
                      "(the layers run as the script sets them)")
            warnings.append(f"the script never calls get_model; it builds the plugin's layers itself "
                            f"({', '.join(sorted(scan.plugin_classes))}): {effect}.")
    elif not scan.uses_get_model:
        what = (
            f"builds its model directly ({', '.join(n + '(...)' for n in scan.direct_models)})"
            if scan.direct_models
            else "never calls get_model"
        )
        if wants_precision:
            effect = ("the mixed-precision layer cannot be injected and the requested precision will NOT be applied"
                      if scan.direct_models else
                      "the mixed-precision layer cannot be injected, and whether its model has the plugin's layers "
                      "(built elsewhere) cannot be told from its source: the summary says what was trained")
        else:
            effect = ("its model keeps upstream's spectral layer" if scan.direct_models else
                      "its model keeps upstream's spectral layer, unless it is built elsewhere with the plugin's")
        warnings.append(f"the script {what}: {effect}.")
    if not scan.uses_trainer:
        warnings.append(
            "the script never creates neuralop.Trainer (or IncrementalFNOTrainer): no precision schedule, "
            "loss scaling or per-epoch summary from the plugin."
        )
    if options.get("optimizer") is not None:
        unreachable = sorted(set(scan.optimizer_calls) - set(scan.replaceable_optimizers))
        if not scan.replaceable_optimizers:
            warnings.append(
                f"--mp.optimizer {options['optimizer']}: the script creates no neuralop.training.AdamW "
                f"optimizer that the plugin can replace"
                f"{' (it uses ' + ', '.join(unreachable) + ')' if unreachable else ''}; torch.optim's "
                "classes are never replaced, so the script's own optimizer is kept."
            )
    if options.get("data_root") and not scan.loaders:
        warnings.append(
            "--mp.data-root: the script uses none of upstream's Darcy / Navier-Stokes / Burgers "
            "loaders, so its data folder cannot be redirected."
        )
    return warnings


def describe_plan(scan, replaces_optimizer=True):
    """One line naming what the plugin will intercept in this script; without
    ``replaces_optimizer`` (no option needs the plugin's optimizer) the script's
    ``neuralop.training.AdamW`` is said to be kept as upstream's."""
    parts = []
    parts.append("get_model" if scan.uses_get_model else "no get_model")
    parts.append("Trainer" if scan.uses_trainer else "no Trainer")
    reachable = sorted({o.rpartition(".")[2] for o in scan.replaceable_optimizers})
    if reachable and not replaces_optimizer:
        parts.append(f"{', '.join(reachable)} kept as upstream's")
    else:
        parts.append(", ".join(reachable) if reachable else "no neuralop AdamW")
    parts.append(", ".join(scan.loaders) if scan.loaders else "no upstream loader")
    return "; ".join(parts)
