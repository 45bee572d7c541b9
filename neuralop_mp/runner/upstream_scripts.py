"""neuraloperator 2.0.0's scripts that ``neuralop-mp run`` refuses up front, and why.

Upstream's ``scripts/`` folder holds more than the Darcy, Navier-Stokes and
Burgers FNO scripts the plugin is made for. The others either train models the
plugin's layer does not reach (GINO, FNOGNO), need data that only a download
provides (which the plugin never does), or fail without the plugin too. Running
them would fail half-way or run silently without the plugin, so we stop before
the script starts and say why. A script is recognised by its file name *and* the
upstream config module it imports, so a user's own ``train_poisson.py`` still runs.

``train_burgers_pino.py`` is not refused: it builds its FNO through ``get_model``
and reads the Burgers files offline, so it runs with the mixed-precision layer;
it trains with its own loop, so there is no precision schedule or loss scaling
(the start-up warnings say so).
"""
from dataclasses import dataclass


@dataclass(frozen=True)
class Refusal:
    """Why an upstream script is not run; ``marker`` is the import that identifies it."""

    marker: str
    reason: str


REFUSED = {
    "train_poisson.py": Refusal(
        "config.poisson_gino_config",
        "it trains a GINO (not an FNO, TFNO or UNO: no spectral layer the plugin can replace) on the "
        "nonlinear-Poisson dataset, which is only available by download (the plugin never downloads "
        "and has no generator for it)",
    ),
    "train_gino_carcfd.py": Refusal(
        "config.gino_carcfd_config",
        "it trains a GINO (no spectral layer the plugin can replace) on the car-CFD dataset, which is "
        "only available by download (the plugin never downloads and has no generator for it)",
    ),
    "train_fnogno_carcfd.py": Refusal(
        "config.fnogno_carcfd_config",
        "it trains an FNOGNO on the car-CFD dataset, which is only available by download (the plugin "
        "never downloads and has no generator for it)",
    ),
    "train_mhd64.py": Refusal(
        "config.the_well",
        "it trains on The Well's MHD dataset, which is only available by download (the plugin never "
        "downloads and has no generator for it)",
    ),
    "train_uqno_darcy.py": Refusal(
        "config.uqno_config",
        "it hard-codes Darcy data at 421x421 and wraps two models in a UQNO trained with torch.optim.Adam "
        "(which the plugin never replaces); this combination is not supported by neuralop-mp run",
    ),
    "test_from_config.py": Refusal(
        "config.test_config",
        "neuraloperator 2.0.0's config/test_config.py imports config.datasets, which 2.0.0 does not ship: "
        "the script fails with ModuleNotFoundError without the plugin too",
    ),
    "login_wandb.py": Refusal(
        "wandb_login",
        "it only logs in to Weights & Biases, which needs the network; it trains nothing",
    ),
}


def refusal_reason(script_name, source):
    """The reason ``neuralop-mp run`` does not run this script, or None when it runs."""
    refusal = REFUSED.get(script_name)
    if refusal is None or refusal.marker not in source:
        return None
    return refusal.reason
