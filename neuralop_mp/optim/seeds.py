"""Seeds of TensorGRaD's random streams, computed with Python ints (no overflow, the
same on every platform).

A parameter's state seed (``state["seed"]``, an int64 tensor) comes from its group's
``seed`` and its position over all groups (:func:`state_seed`); each random-k draw is
seeded from the state seed and the step of the refresh (:func:`draw_seed`), and each
stochastically rounded write from the state seed, the step and the write
(:func:`rounding_seed`).
"""

#: group seeds accepted: what ``torch.Generator.manual_seed`` takes, ``[0, 2**64)``
SEED_LIMIT = 2**64
_MASK64 = SEED_LIMIT - 1


def state_seed(group_seed, ordinal):
    """Seed of the random streams of the parameter at 1-based position ``ordinal`` of all
    groups: ``group_seed * 1_000_003 + ordinal`` as a signed 64-bit int.

    Below ``2**63`` this is the plain product and sum (the seeds of earlier versions);
    above, it wraps modulo ``2**64`` into int64's range (two's complement). 1_000_003 is
    odd, so for one ``ordinal`` every seed in ``[0, 2**64)`` gets its own state seed.
    """
    value = (int(group_seed) * 1_000_003 + int(ordinal)) & _MASK64
    return value - SEED_LIMIT if value >= 2**63 else value


def splitmix64(x):
    """The output function of Steele, Lea and Flood's SplitMix64 generator for state ``x``
    (a bijection of 64-bit ints that scatters nearby inputs far apart)."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def draw_seed(seed, step):
    """Seed (in ``[0, 2**63)``) of the random-k draw of the refresh at ``step`` of the
    parameter with state seed ``seed``.

    Hashed, not summed: with ``seed + step`` the parameter at position ``o`` and step
    ``s`` drew the same indices as the one at ``o + d`` and step ``s - d``. Two draws
    share a seed here only when ``splitmix64(seed_1) ^ splitmix64(seed_2)`` equals
    ``step_1 ^ step_2`` (up to the dropped top bit): for distinct state seeds, a
    pseudo-random 64-bit value that would have to be below 2**40 for steps below 2**40
    (odds about 2**-24), and then only at steps whose XOR is that value.
    """
    return splitmix64(splitmix64(int(seed) & _MASK64) ^ (int(step) & _MASK64)) & (2**63 - 1)


#: rounding streams of one step: moment writes ``2 * part + moment`` (parts "low_rank" and
#: "sparse", moments exp_avg and exp_avg_sq) and :data:`WEIGHT_WRITE`
ROUNDING_WRITES = 8
#: the write of the updated 16-bit weight
WEIGHT_WRITE = 7


def rounding_seed(seed, step, write):
    """Seed (in ``[0, 2**62)``) of the stochastic-rounding noise of ``write`` (in
    ``[0, ROUNDING_WRITES)``) at ``step`` (the count before the step) of the parameter
    with state seed ``seed``.

    Hashed like :func:`draw_seed`: a linear seed (``(seed * c + step) * 8 + write``) let
    group seeds ``2**29`` apart share every stream on the CPU, whose generator keeps
    only the low 32 bits of its seed. Here every bit of the state seed reaches the low
    32 bits of the result.
    """
    if not 0 <= int(write) < ROUNDING_WRITES:
        raise ValueError(f"Invalid rounding write={write}; expected an int in [0, {ROUNDING_WRITES}).")
    mixed = splitmix64(splitmix64(int(seed) & _MASK64) ^ (int(step) & _MASK64))
    # a second round separates the writes of one step (and these seeds from draw_seed's)
    return splitmix64(mixed ^ (ROUNDING_WRITES + int(write))) & (2**62 - 1)
