"""PrecisionPolicy: the precision settings of the plugin's spectral layers, parsed once.

A policy is what ``model.fno_block_precision``, ``model.half_dtype``,
``model.stabilizer``, ``model.spectral_weight_dtype`` and ``model.autocast_scope`` mean
together. It is
validated when it is made (a bad value raises a ValueError naming the key, the value
and the allowed values) and immutable afterwards, so the config, the model
constructor, the spectral layer, the schedule's phases and the trainer can pass one
object around instead of re-reading and re-checking strings.

The fields of :class:`PrecisionPolicy` are the single list of plugin model keys:
config sections, ``get_model`` and the plugin's model classes take their names,
defaults and normalizers from here.

References
----------
.. [1] Tu, R., White, C., Kossaifi, J., Bonev, B., Pekhimenko, G., Azizzadenesheli, K.,
   Anandkumar, A. "Guaranteed Approximation Bounds for Mixed-Precision Neural
   Operators", ICLR 2024, arXiv:2307.15034.
"""
import dataclasses
from dataclasses import dataclass, field
from typing import Optional

import torch

from .vocabulary import (
    STABILIZER_OFF,
    normalize_autocast_scope,
    normalize_half_dtype,
    normalize_precision_request,
    normalize_spectral_weight_dtype,
    normalize_stabilizer_request,
    read_key,
    resolve_half_dtype,
    spectral_weight_torch_dtype,
)


def default_stabilizer(mode):
    """The stabilizer of precision ``mode`` when none is named: "auto" for "half" (resolved by
    :func:`auto_stabilizer`), None for the other modes (the paper's recipe)."""
    return "auto" if mode == "half" else None


def auto_stabilizer(half_dtype):
    """What a stabilizer of "auto" is when the half type is ``half_dtype`` (a torch dtype):
    "tanh" for float16, whose 65504 the FFT's inputs overflow otherwise; None for bfloat16,
    which has float32's exponent range. The one rule for a model built from a config
    (:meth:`PrecisionPolicy.with_mode_stabilizer`) and a schedule's phases
    (:meth:`neuralop_mp.training.schedule.PrecisionPhase.stabilizer_for`)."""
    return "tanh" if half_dtype == torch.float16 else None


def _key(normalize, config_type, help):
    """A policy field: its normalizer, its type in a config section, a one-line help."""
    return {"normalize": normalize, "config_type": config_type, "help": help}


@dataclass(frozen=True)
class PrecisionPolicy:
    """Precision settings of the mixed-precision spectral layers.

    Parameters
    ----------
    fno_block_precision : {"full", "mixed", "half", "auto"}, default "full"
        Upstream's flag: where the 16-bit type is used inside the spectral layer.
        "auto": decided from a calibration on the first training batches
        (:func:`neuralop_mp.diagnose.auto.calibrate_precision`); models start in "full".
    half_dtype : {"auto", "float16", "bfloat16"} or torch dtype, default "auto"
        16-bit type of "mixed"/"half"; "auto" is float16 on CUDA, bfloat16 elsewhere.
    stabilizer : {None, "off", "tanh"}, default None
        Pre-activation before every forward FFT. None (also "none"/"null"/"") is not
        given: where a config is built (:meth:`with_mode_stabilizer`, a precision
        schedule's constant phase) the mode's default, tanh for "half" in float16; a
        model or layer built directly applies none. "off": no stabilizer, whatever the
        mode (kept as "off" here, so that it can be told from None; layers store None).
    spectral_weight_dtype : {"complex64", "complex32"} or torch dtype, default "complex64"
        Storage of the spectral weights and of their gradients.
    autocast_scope : {"auto", "model", "fno_blocks", "spectral"}, default "auto"
        Where ``torch.autocast`` may round the model's activations to 16 bits: "model"
        everywhere (plain autocast); "fno_blocks" everywhere but the lifting and
        projection (and UNO's horizontal skips), which run in float32; "spectral"
        nowhere but inside the spectral layers, as ``fno_block_precision`` says (the
        model runs as without autocast). "auto": "model" on CUDA, "spectral" elsewhere
        (:func:`neuralop_mp.vocabulary.resolve_autocast_scope`). Applied by the
        plugin's model classes (:mod:`neuralop_mp.layers.autocast_scope`).

    Examples
    --------
    >>> policy = PrecisionPolicy("mixed", half_dtype="bfloat16", stabilizer="none")
    >>> policy.stabilizer is None, policy.replace(fno_block_precision="full").half_dtype
    (True, 'bfloat16')
    """

    fno_block_precision: str = field(default="full", metadata=_key(
        normalize_precision_request, str,
        'precision of the spectral convolutions ("full" | "mixed" | "half" | "auto")'))
    half_dtype: str = field(default="auto", metadata=_key(
        normalize_half_dtype, str, 'half type of "mixed"/"half" ("auto": float16 on CUDA, bfloat16 elsewhere)'))
    stabilizer: Optional[str] = field(default=None, metadata=_key(
        normalize_stabilizer_request, Optional[str],
        'pre-activation before every forward FFT (None, unset: the mode\'s default, tanh for float16 "half" | '
        '"off": none, whatever the mode; typed on a command line, none is "off" | "tanh")'))
    spectral_weight_dtype: str = field(default="complex64", metadata=_key(
        normalize_spectral_weight_dtype, str,
        'storage of the spectral weights and their gradients ("complex64" | "complex32")'))
    autocast_scope: str = field(default="auto", metadata=_key(
        normalize_autocast_scope, str,
        'where autocast may round activations to 16 bits ("auto" | "model" | "fno_blocks" | "spectral")'))

    def __post_init__(self):
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, f.metadata["normalize"](getattr(self, f.name), key=f.name))

    # ------------------------------------------------------------------ the key list
    @classmethod
    def keys(cls):
        """Names of the policy's fields: the plugin's model keys, in order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def defaults(cls):
        """``{key: default}`` of every field."""
        return {f.name: f.default for f in dataclasses.fields(cls)}

    @classmethod
    def config_fields(cls):
        """``{key: (type, default, help)}``: what a config section declares for each key."""
        return {f.name: (f.metadata["config_type"], f.default, f.metadata["help"]) for f in dataclasses.fields(cls)}

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_config(cls, section, prefix="model"):
        """The policy of a config section (dict, Bunch or zencfg config); missing keys
        take their defaults. Error messages name ``prefix.key``."""
        values = {}
        for f in dataclasses.fields(cls):
            value = read_key(section, f.name, f.default)
            values[f.name] = f.metadata["normalize"](value, key=f"{prefix}.{f.name}")
        return cls(**values)

    @classmethod
    def pop_from(cls, mapping, prefix="model"):
        """Remove the policy's keys from a dict and return ``(policy, remaining dict)``."""
        rest = dict(mapping)
        present = {key: rest.pop(key) for key in cls.keys() if key in rest}
        return cls.from_config(present, prefix=prefix), rest

    @classmethod
    def coerce(cls, value):
        """A policy from a policy, a mode string, a dict of fields, or None (the default)."""
        if isinstance(value, cls):
            return value
        if value is None:
            return cls()
        if isinstance(value, str):
            return cls(fno_block_precision=value)
        if isinstance(value, dict):
            unknown = sorted(set(value) - set(cls.keys()))
            if unknown:
                raise TypeError(f"Unknown precision policy keys {unknown}; allowed keys: {', '.join(cls.keys())}.")
            return cls(**value)
        raise TypeError(
            f"Expected a PrecisionPolicy, a precision mode or a dict of {', '.join(cls.keys())}; "
            f"got {type(value).__name__}."
        )

    @classmethod
    def fields_of(cls, value):
        """The fields ``value`` sets, validated: every field of a ``PrecisionPolicy``, the
        keys of a dict, the mode of a mode string (what an API taking "some settings"
        changes, keeping the others)."""
        if isinstance(value, cls):
            return value.as_dict()
        if isinstance(value, str):
            changes = {"fno_block_precision": value}
        elif isinstance(value, dict):
            changes = dict(value)
        else:
            return cls.coerce(value).as_dict()  # raises, naming what it accepts
        validated = cls.coerce(changes).as_dict()  # checks each value and refuses unknown keys
        return {key: validated[key] for key in changes}

    # ------------------------------------------------------------------ derived values
    def replace(self, **changes):
        """A copy with some fields changed (validated like a new policy)."""
        return dataclasses.replace(self, **changes)

    def as_dict(self):
        """``{key: value}`` of every field (plain strings and None)."""
        return dataclasses.asdict(self)

    def half_torch_dtype(self, device):
        """The torch 16-bit dtype this policy computes in on ``device``."""
        return resolve_half_dtype(self.half_dtype, device)

    def applied(self):
        """This policy as a layer or a model built directly is set to: a stabilizer of "off"
        becomes None (no stabilizer; layers store only None and "tanh"). The policy itself
        otherwise; None stays None (no mode default is applied: :meth:`with_mode_stabilizer`)."""
        return self.replace(stabilizer=None) if self.stabilizer == STABILIZER_OFF else self

    def with_mode_stabilizer(self, device):
        """This policy with its stabilizer request resolved to the one the model runs: an unset
        stabilizer (None) replaced by its mode's default on ``device``, tanh for "half" in
        float16, as ``neuralop-mp train`` runs the mode (a config's ``model.stabilizer`` of None
        means "the mode's default"); "off" replaced by None (no stabilizer, :meth:`applied`);
        the policy itself where it names "tanh" or its mode's default is none.

        ``device`` (a torch device or its name, or a callable giving one) decides a
        ``half_dtype`` of "auto" (float16 on CUDA); a callable is called only then (a config's
        device is read only where it decides something).
        """
        if self.stabilizer == STABILIZER_OFF:
            return self.applied()
        if self.stabilizer is not None or default_stabilizer(self.fno_block_precision) != "auto":
            return self
        if callable(device):
            device = device() if self.half_dtype == "auto" else "cpu"  # a concrete half type: any device
        stabilizer = auto_stabilizer(self.half_torch_dtype(device))
        return self if stabilizer is None else self.replace(stabilizer=stabilizer)

    @property
    def weight_torch_dtype(self):
        """The torch dtype the spectral weights are stored in."""
        return spectral_weight_torch_dtype(self.spectral_weight_dtype)

    @property
    def is_default(self):
        """True when every field has its default (a model with this policy is upstream's)."""
        return self == type(self)()
