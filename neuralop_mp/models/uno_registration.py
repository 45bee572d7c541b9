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

    Same constructor, modules and parameters as :class:`neuralop.models.UNO`; it only adds
    ``BaseModel``'s registration and init-argument recording so ``get_model`` can build it
    from a config and ``from_checkpoint`` can rebuild it. Its ``state_dict()`` therefore
    carries ``BaseModel``'s extra ``"_metadata"`` entry (the recorded arguments): a state
    dict of upstream's UNO loads into this class, but this class's loads into upstream's
    UNO only without that entry (or with ``strict=False``).
    """
