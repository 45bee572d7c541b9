"""Upstream's UNO, registered in upstream's model registry as ``"uno"``.

neuraloperator registers every ``BaseModel`` subclass under its lowercased name and
``neuralop.get_model(config)`` builds ``config.model.model_arch`` from the remaining
``config.model`` fields. Upstream's ``UNO`` is a plain ``nn.Module``, so it cannot be
built that way; subclassing it together with ``BaseModel`` registers it under
``"uno"`` without touching any name upstream already uses.
"""
from neuralop.models.base_model import BaseModel
from neuralop.models.uno import UNO as _UpstreamUNO


class UNO(_UpstreamUNO, BaseModel, name="UNO"):
    """Upstream's U-shaped neural operator, registered as ``"uno"``.

    Identical to :class:`neuralop.models.UNO` (same constructor, same state_dict
    keys); it only adds ``BaseModel``'s registration and init-argument recording so
    ``get_model`` can build it from a config and ``from_checkpoint`` can rebuild it.
    """
