"""Precision schedules: which precision each training epoch runs in.

A schedule is an ordered list of :class:`PrecisionPhase`. Each phase names a
spectral-layer precision mode, whether the rest of the network runs under
``torch.autocast``, the stabilizer applied before every forward FFT, and how long
it lasts: either a share of the run (``half:0.25``) or the epoch at which it ends
(``half@10``). All phases of one schedule use the same kind of length.

String syntax (:meth:`PrecisionSchedule.parse`)
-----------------------------------------------
Phases are separated by commas; each phase is ``MODE[:SHARE | @END][/OPTION...]``.

- ``MODE`` is one of ``full``, ``mixed``, ``half``.
- ``:SHARE`` is the fraction of the epochs (shares must sum to 1 within 1e-6); the
  last phase may omit it and takes what is left.
- ``@END`` is the epoch (0-based, exclusive) at which the phase ends; the last
  phase may omit it and runs to the end of training.
- ``/OPTION`` overrides a default: ``/tanh``, ``/notanh`` or ``/autotanh`` (stabilizer),
  ``/autocast`` or ``/noautocast``.

Defaults follow the paper [1]_: a "half" phase uses autocast and the tanh
stabilizer, a "mixed" phase autocast without tanh, a "full" phase neither. So
``"half:0.25,mixed:0.5,full:0.25"`` is the paper's schedule (preset ``"paper"``),
``"mixed"`` alone is a constant schedule, and ``"half@10/notanh,full"`` runs
epochs 0-9 in half precision without tanh and the rest in full precision.

The stabilizer default of a "half" phase is ``"auto"``: tanh when the half type
is float16 (the paper's setting: fp16 overflows at 65504 inside FFTs), none with
bfloat16, which has float32's exponent range and cannot overflow there. Forcing
tanh with bf16 only costs accuracy: on the built-in Darcy data (CPU, bf16, 10
epochs) ``half:0.25/tanh,...`` ended at 0.117 test L2 against 0.075 without tanh
and 0.075 in full precision (``docs/training.md``). Write ``/tanh`` to force it.

Rounding rule (share schedules)
-------------------------------
With ``n_epochs`` epochs and cumulative shares ``c_1 < c_2 < ... < c_K = 1``,
phase ``k`` ends at epoch ``floor(c_k * n_epochs)`` (exclusive). Rounding down
hands fractional epochs to the later, more precise phase, and guarantees the last
phase at least one epoch, so the final model is always trained (and evaluated) in
the last phase's precision. With fewer epochs than phases, the phases whose range
rounds to nothing are skipped: the paper schedule on 2 epochs runs "mixed" then
"full"; on 1 epoch only "full".

References
----------
.. [1] Tu, R., White, C., Kossaifi, J., Bonev, B., Pekhimenko, G.,
       Azizzadenesheli, K., and Anandkumar, A. (2024). "Guaranteed Approximation
       Bounds for Mixed-Precision Neural Operators". ICLR 2024, arXiv:2307.15034.
"""
import difflib
import math
import warnings
from dataclasses import dataclass, field, fields

# the modes' default stabilizers and what "auto" is: one rule with the model a config builds
from ..precision_policy import auto_stabilizer, default_stabilizer
from ..vocabulary import PRECISION_MODES, STABILIZERS, check_choice, check_int_at_least, is_integer, none_if_null

SHARE_TOLERANCE = 1e-6
STABILIZER_CHOICES = STABILIZERS + ("auto",)
_OPTIONS = {
    "tanh": ("stabilizer", "tanh"),
    "autotanh": ("stabilizer", "auto"),
    "notanh": ("stabilizer", None),
    "autocast": ("autocast", True),
    "noautocast": ("autocast", False),
}


class SkippedPhaseWarning(UserWarning):
    """A schedule's phase gets no epoch in a run of so few epochs (:meth:`PrecisionSchedule.check_fits`):
    a warning for training; an evaluation that builds the run's trainer again leaves it out."""


class _ModeDefault:
    """Sentinel: "use the mode's default" (shown as such in signatures and help())."""

    def __repr__(self):
        return "<mode default>"


_UNSET = _ModeDefault()


@dataclass(frozen=True)
class PrecisionPhase:
    """One phase of a precision schedule.

    Parameters
    ----------
    mode : {"full", "mixed", "half"}
        ``fno_block_precision`` of the mixed-precision spectral layers.
    share : float, optional
        Fraction of the training epochs, in (0, 1]. Exclusive with ``end_epoch``.
    end_epoch : int, optional
        Epoch (0-based, exclusive) at which the phase ends. Exclusive with ``share``.
        ``None`` on the last phase of an epoch schedule: runs to the end.
    autocast : bool, optional
        Run the network (outside the spectral layers' own casts) under
        ``torch.autocast``. Default: ``mode != "full"``.
    stabilizer : {None, "tanh", "auto"}, optional
        Pre-activation before every forward FFT. Default: "auto" for "half"
        (tanh with float16, whose FFT inputs overflow otherwise; none with
        bfloat16), None for the other modes. See :meth:`stabilizer_for`.
    """

    mode: str
    share: float = None
    end_epoch: int = None
    autocast: bool = None
    stabilizer: object = field(default=_UNSET)

    def __post_init__(self):
        check_choice("precision phase mode", self.mode, PRECISION_MODES)
        if self.share is not None and self.end_epoch is not None:
            raise ValueError(
                f"A precision phase has either a share or an end_epoch, not both "
                f"(got share={self.share!r}, end_epoch={self.end_epoch!r})."
            )
        if self.share is not None:
            if isinstance(self.share, bool) or not isinstance(self.share, (int, float)):
                raise TypeError(f"Invalid phase share={self.share!r}; expected a number in (0, 1].")
            if not 0.0 < float(self.share) <= 1.0:
                raise ValueError(f"Invalid phase share={self.share!r}; a share must be in (0, 1].")
            object.__setattr__(self, "share", float(self.share))
        if self.end_epoch is not None:
            value = self.end_epoch
            if isinstance(value, float) and value.is_integer():
                value = int(value)  # a config's 3.0
            object.__setattr__(self, "end_epoch", check_int_at_least("phase end_epoch", value))
        autocast = self.mode != "full" if self.autocast is None else self.autocast
        if not isinstance(autocast, bool):
            raise TypeError(f"Invalid phase autocast={autocast!r}; expected True or False.")
        object.__setattr__(self, "autocast", autocast)
        stabilizer = default_stabilizer(self.mode) if self.stabilizer is _UNSET else self.stabilizer
        stabilizer = check_choice("precision phase stabilizer", none_if_null(stabilizer), STABILIZER_CHOICES)
        object.__setattr__(self, "stabilizer", stabilizer)

    def stabilizer_for(self, half_dtype):
        """The stabilizer this phase applies when the half type is ``half_dtype``
        (a torch dtype): "auto" is "tanh" for float16 and None otherwise."""
        if self.stabilizer == "auto":
            return auto_stabilizer(half_dtype)
        return self.stabilizer

    def policy(self, base, half_dtype):
        """The :class:`~neuralop_mp.PrecisionPolicy` of this phase: ``base`` (a policy: half
        type and weight storage) with this phase's mode and stabilizer; ``half_dtype`` is
        the torch dtype that resolves a stabilizer of "auto"."""
        return base.replace(fno_block_precision=self.mode, stabilizer=self.stabilizer_for(half_dtype))

    @property
    def is_full(self):
        """True when the phase changes nothing: full precision, no autocast, no stabilizer."""
        return self.mode == "full" and not self.autocast and self.stabilizer is None

    def __str__(self):
        return self._text()

    def _text(self, exact=True):
        """The phase as :meth:`PrecisionSchedule.parse` reads it. A share is written with 12
        significant digits where they read back as the same number (0.5 stays "0.5"), else
        exactly (repr): a checkpoint stores the text, and a resume compares its boundaries with
        this run's (1/3 as 0.333333333333 ends a phase of 3000 epochs one epoch earlier).
        ``exact=False``: always 12 digits, as versions before exact shares wrote it."""
        text = self.mode
        if self.share is not None:
            share = f"{self.share:.12g}"
            text += ":" + (share if not exact or float(share) == self.share else repr(self.share))
        elif self.end_epoch is not None:
            text += f"@{self.end_epoch}"
        if self.stabilizer != default_stabilizer(self.mode):
            text += {"tanh": "/tanh", None: "/notanh", "auto": "/autotanh"}[self.stabilizer]
        if self.autocast != (self.mode != "full"):
            text += "/autocast" if self.autocast else "/noautocast"
        return text


def _parse_phase(text, position):
    """Parse one ``MODE[:SHARE|@END][/OPTION...]`` item of a schedule string."""
    head, *options = [part.strip() for part in text.strip().split("/")]
    kwargs = {}
    if ":" in head:
        mode, amount = (s.strip() for s in head.split(":", 1))
        try:
            kwargs["share"] = float(amount)
        except ValueError:
            raise ValueError(
                f"Invalid share {amount!r} in precision phase {position} ({text.strip()!r}); "
                "expected a number such as 'half:0.25'."
            ) from None
    elif "@" in head:
        mode, amount = (s.strip() for s in head.split("@", 1))
        if not (amount.isascii() and amount.isdigit()):  # str.isdigit alone takes "²", which int() refuses
            raise ValueError(
                f"Invalid end epoch {amount!r} in precision phase {position} ({text.strip()!r}); "
                "expected an integer such as 'half@10'."
            )
        kwargs["end_epoch"] = int(amount)
    else:
        mode = head
    check_choice(f"precision phase {position} mode", mode.lower(), PRECISION_MODES)
    given = {}  # field -> the option that set it: a second option setting it otherwise contradicts it
    for option in options:
        key = check_choice(f"precision phase {position} option", option.lower(), tuple(_OPTIONS))
        name, value = _OPTIONS[key]
        if name in kwargs and kwargs[name] != value:
            raise ValueError(f"Invalid precision phase {position} ({text.strip()!r}): the options {given[name]!r} and "
                             f"{key!r} contradict each other (both set its {name}); give one of them.")
        kwargs[name], given[name] = value, key
    return PrecisionPhase(mode.lower(), **kwargs)


def _as_phase(item, position):
    """Coerce a list item of a config (str, dict, tuple, PrecisionPhase) into a phase."""
    if isinstance(item, PrecisionPhase):
        return item
    if isinstance(item, str):
        return _parse_phase(item, position)
    if isinstance(item, dict) or hasattr(type(item), "to_dict"):  # dict, Bunch, zencfg section
        from ..configs.zencfg_compat import section_dict  # the configs import this module

        values = section_dict(item)
        # Python's own "unexpected keyword argument" names neither the phase nor the fields there are
        allowed = [f.name for f in fields(PrecisionPhase)]
        unknown = [key for key in values if key not in allowed]
        if unknown or "mode" not in values:
            problem = f"unknown field(s) {unknown}" if unknown else "no 'mode'"
            raise TypeError(f"Invalid precision phase {position} {values!r}: {problem}; allowed fields: "
                            f"{', '.join(map(repr, allowed))} ('mode' required).")
        return PrecisionPhase(**values)
    if isinstance(item, (tuple, list)) and len(item) == 2:
        mode, share = item
        return PrecisionPhase(mode, share=share)
    raise TypeError(
        f"Invalid precision phase {position}: {item!r}; expected a string like 'half:0.25', "
        "a dict of PrecisionPhase fields, a (mode, share) pair or a PrecisionPhase."
    )


class PrecisionSchedule:
    """An ordered, validated list of precision phases over a training run.

    Parameters
    ----------
    phases : sequence of PrecisionPhase (or of their string / dict forms), or str
        A string is read as :meth:`parse` reads it (a preset name too). At least one
        phase. Either every phase has a ``share`` (shares sum to 1 within
        1e-6; the last may be None and takes what is left) or every phase but
        possibly the last has an ``end_epoch`` (strictly increasing). A single
        phase with neither is a constant schedule.

    Examples
    --------
    >>> schedule = PrecisionSchedule.parse("half:0.25,mixed:0.5,full:0.25")
    >>> [schedule.phase_for_epoch(e, 8).mode for e in range(8)]
    ['half', 'half', 'mixed', 'mixed', 'mixed', 'mixed', 'full', 'full']
    """

    PRESETS = {"paper": "half:0.25,mixed:0.5,full:0.25"}

    def __init__(self, phases):
        if isinstance(phases, str):  # not a sequence of one-letter phases ("paper" read 'p', 'a', ...)
            phases = self.parse(phases).phases
        phases = [_as_phase(p, i + 1) for i, p in enumerate(phases)]
        if not phases:
            raise ValueError("A precision schedule needs at least one phase, e.g. 'mixed' or 'half:0.25,full:0.75'.")
        self.phases = tuple(self._validated(phases))

    @staticmethod
    def _validated(phases):
        body, last = phases[:-1], phases[-1]
        if len(phases) == 1 and last.share is None and last.end_epoch is None:
            return phases
        if any(p.share is not None for p in phases):
            if any(p.share is None for p in body) or last.end_epoch is not None:
                raise ValueError(
                    f"Mixed phase lengths in schedule {','.join(map(str, phases))!r}: give every "
                    "phase a share (the last may omit it), or every phase an end epoch."
                )
            total = sum(p.share for p in body)
            if last.share is None:
                if total >= 1.0 - SHARE_TOLERANCE:
                    raise ValueError(
                        f"Phase shares {[p.share for p in body]} already sum to {total:.6g}; "
                        f"nothing is left for the last phase {last.mode!r}."
                    )
                phases[-1] = PrecisionPhase(last.mode, share=1.0 - total, autocast=last.autocast,
                                            stabilizer=last.stabilizer)
            else:
                total += last.share
                if abs(total - 1.0) > SHARE_TOLERANCE:
                    raise ValueError(
                        f"Phase shares {[p.share for p in phases]} sum to {total:.6g}; they must "
                        f"sum to 1 (within {SHARE_TOLERANCE:g})."
                    )
            return phases
        if any(p.end_epoch is None for p in body):
            raise ValueError(
                f"Phase {body.index(next(p for p in body if p.end_epoch is None)) + 1} of schedule "
                f"{','.join(map(str, phases))!r} has no length; only the last phase may omit it."
            )
        ends = [p.end_epoch for p in phases if p.end_epoch is not None]
        if any(b <= a for a, b in zip(ends, ends[1:])):
            raise ValueError(f"Phase end epochs {ends} must be strictly increasing.")
        return phases

    # ------------------------------------------------------------------ constructors
    @classmethod
    def parse(cls, text):
        """Build a schedule from its string form (see the module docstring) or a preset name."""
        if not isinstance(text, str):
            raise TypeError(f"PrecisionSchedule.parse expects a string, got {type(text).__name__}.")
        text = cls.PRESETS.get(text.strip().lower(), text)
        word = text.strip().lower()
        if word and not any(mark in word for mark in ",:@/") and word not in PRECISION_MODES:
            # one word, neither a mode nor a preset: a phase's "allowed modes" alone would hide the presets
            close = difflib.get_close_matches(word, PRECISION_MODES + tuple(cls.PRESETS), n=1)
            hint = f" Did you mean: {close[0]!r}?" if close else ""
            raise ValueError(
                f"Invalid precision schedule {text.strip()!r}; allowed: a mode "
                f"({', '.join(map(repr, PRECISION_MODES))}), a preset ({', '.join(map(repr, cls.PRESETS))}) "
                f"or phases such as 'half:0.25,mixed:0.5,full:0.25'.{hint}"
            )
        items = [item for item in text.split(",")]
        if not text.strip() or any(not item.strip() for item in items):
            raise ValueError(
                f"Invalid precision schedule {text!r}: empty phase. Expected e.g. "
                f"'half:0.25,mixed:0.5,full:0.25' or a preset: {', '.join(cls.PRESETS)}."
            )
        return cls([_parse_phase(item, i + 1) for i, item in enumerate(items)])

    @classmethod
    def from_config(cls, value, key="opt.precision_schedule"):
        """Build a schedule from a config value; None or "" mean no schedule (returns None).

        Accepts a :class:`PrecisionSchedule`, a string (:meth:`parse`), or a list of
        phase strings / dicts / ``(mode, share)`` pairs / :class:`PrecisionPhase`;
        anything else is a TypeError naming ``key``.
        """
        if value is None or isinstance(value, PrecisionSchedule):
            return value
        if isinstance(value, str):
            if none_if_null(value) is None:
                return None
            return cls.parse(value)
        if isinstance(value, (list, tuple)):
            return cls(list(value))
        raise TypeError(
            f"Invalid {key}={value!r}; expected None, a string like "
            "'half:0.25,mixed:0.5,full:0.25', a list of phases or a PrecisionSchedule."
        )

    @classmethod
    def constant(cls, mode, **phase_kwargs):
        """A one-phase schedule: the whole run in ``mode`` (with that mode's defaults)."""
        return cls([PrecisionPhase(mode, **phase_kwargs)])

    @classmethod
    def paper(cls):
        """The paper's schedule: half+tanh+autocast 25%, mixed+autocast 50%, full 25%."""
        return cls.parse("paper")

    # ------------------------------------------------------------------ queries
    def boundaries(self, n_epochs):
        """``[(start, end), ...]`` epoch ranges of each phase for a run of ``n_epochs``.

        Empty ranges (``start == end``) are phases skipped in a run this short. The
        last range always ends at ``n_epochs``.
        """
        # no int(): 2.7 would be truncated and True taken as 1 epoch, silently
        n_epochs = check_int_at_least("n_epochs", n_epochs, unit="a schedule needs at least one epoch")
        ends, cumulative = [], 0.0
        for phase in self.phases[:-1]:
            if phase.share is not None:
                cumulative += phase.share
                # tiny slack: 0.3 * 10 is 2.9999999999999996 in floating point
                end = math.floor(cumulative * n_epochs + 1e-9)
                end = min(end, n_epochs - 1)  # the last phase always gets an epoch
            else:
                end = min(phase.end_epoch, n_epochs)
            ends.append(max(end, ends[-1] if ends else 0))
        ends.append(n_epochs)
        starts = [0] + ends[:-1]
        return list(zip(starts, ends))

    def phases_without_epochs(self, n_epochs):
        """Indices of the phases that get no epoch in a run of ``n_epochs``."""
        return [i for i, (start, end) in enumerate(self.boundaries(n_epochs)) if start == end]

    def check_fits(self, n_epochs, warn=True):
        """Refuse a schedule whose last phase never runs; warn about other skipped phases
        (``warn=False``: refuse only, for a check made before the trainer that warns).

        An end-epoch schedule can ask for more epochs than the run has:
        ``"half@5,full"`` on 5 epochs or fewer never reaches "full", so the model would
        end (and be evaluated) in another precision than the one asked for last.
        Share schedules always give the last phase an epoch; on short runs their
        earlier phases may round to nothing (see the module docstring).

        Raises
        ------
        ValueError
            When the last phase gets no epoch, or has an end epoch other than ``n_epochs``.
        """
        n_epochs = check_int_at_least("n_epochs", n_epochs, unit="a schedule needs at least one epoch")
        last = len(self.phases) - 1
        end = self.phases[last].end_epoch
        if end is not None and end != n_epochs:
            # the last phase runs to the end of the run: another end epoch would be ignored
            raise ValueError(
                f"Precision schedule {str(self)!r}: its last phase {str(self.phases[last])!r} ends at epoch {end}, "
                f"but the last phase runs until the run ends, at epoch {n_epochs}. Drop '@{end}' from it "
                f"(or train for n_epochs={end}).")
        skipped = self.phases_without_epochs(n_epochs)
        if last in skipped:
            # the last range always ends at n_epochs, so it is empty only for end-epoch schedules
            raise ValueError(
                f"Precision schedule {str(self)!r} never reaches its last phase {str(self.phases[last])!r} "
                f"in a run of {n_epochs} epochs (the phase before it ends at epoch "
                f"{self.phases[last - 1].end_epoch}). Use more epochs, earlier end epochs, or shares "
                "such as 'half:0.5,full:0.5'.")
        if skipped and warn:
            warnings.warn(self.skipped_phases_text(n_epochs), SkippedPhaseWarning, stacklevel=2)
        return self

    def skipped_phases_text(self, n_epochs):
        """What :meth:`check_fits` warns of the phases that get no epoch in a run of ``n_epochs``
        (:meth:`phases_without_epochs`), or None where every phase gets one: the trainer warns with
        the same words, naming the line that built it."""
        skipped = self.phases_without_epochs(n_epochs)
        if not skipped:
            return None
        names = [str(self.phases[i]) for i in skipped]
        return f"Precision schedule {str(self)!r}: phase(s) {names} get no epoch in a run of {n_epochs} epochs " \
               "and are skipped."

    def index_for_epoch(self, epoch, n_epochs):
        """Index of the phase that epoch ``epoch`` (0-based) of ``n_epochs`` runs in."""
        n_epochs = check_int_at_least("n_epochs", n_epochs, unit="a schedule needs at least one epoch")
        if not is_integer(epoch):  # 4.5 would fall in a phase's range and be answered
            raise TypeError(f"Invalid epoch={epoch!r}; allowed values: integers in [0, n_epochs={n_epochs}).")
        if not 0 <= epoch < n_epochs:
            raise ValueError(f"Invalid epoch={epoch}; expected 0 <= epoch < n_epochs={n_epochs}.")
        for index, (start, end) in enumerate(self.boundaries(n_epochs)):
            if start <= epoch < end:
                return index
        raise AssertionError("unreachable: the last phase ends at n_epochs")

    def phase_for_epoch(self, epoch, n_epochs):
        """The :class:`PrecisionPhase` of epoch ``epoch`` (0-based) in a run of ``n_epochs``."""
        return self.phases[self.index_for_epoch(epoch, n_epochs)]

    @property
    def is_full(self):
        """True when every phase is plain full precision (the schedule changes nothing)."""
        return all(p.is_full for p in self.phases)

    @property
    def uses_half(self):
        """True when some phase runs a half type (half/mixed layers or autocast)."""
        return any(p.mode != "full" or p.autocast for p in self.phases)

    def autocast_overruled(self, mixed_precision):
        """The warning for a trainer's ``mixed_precision=True`` beside this schedule, whose phases
        decide autocast: where some run without it, the flag does nothing there. None otherwise."""
        plain = [str(p) for p in self.phases if not p.autocast]
        if not mixed_precision or not plain:
            return None
        return (f"mixed_precision=True is overruled by the precision schedule {str(self)!r}: with a schedule "
                f"its phases decide autocast, and it is off in {', '.join(plain)}. To autocast there, say so "
                "in the schedule (e.g. 'full/autocast').")

    def __iter__(self):
        return iter(self.phases)

    def __len__(self):
        return len(self.phases)

    def __getitem__(self, index):
        return self.phases[index]

    def __eq__(self, other):
        return isinstance(other, PrecisionSchedule) and self.phases == other.phases

    def __hash__(self):
        return hash(self.phases)

    def __str__(self):
        return ",".join(str(p) for p in self.phases)

    def written_as(self, text):
        """Whether ``text`` (a schedule a checkpoint or history holds) is this schedule: its
        ``str()``, or the text versions before exact shares wrote for it (shares to 12
        significant digits, which read back as other numbers for shares such as 1/3)."""
        return text == str(self) or text == ",".join(p._text(exact=False) for p in self.phases)

    def __repr__(self):
        return f"PrecisionSchedule.parse({str(self)!r})"
