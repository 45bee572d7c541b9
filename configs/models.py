"""Model sections of a training config (``config.model``).

Every field of a model section is a constructor argument of the model named by
``model_arch``, except the plugin's precision keys (the fields of
:class:`~neuralop_mp.PrecisionPolicy`: ``fno_block_precision``, ``half_dtype``,
``stabilizer``, ``spectral_weight_dtype``), which :func:`neuralop_mp.get_model` hands to
the plugin's model class for the architecture, and ``data_channels``, which becomes ``in_channels`` (times
``patching.levels + 1``) exactly as upstream's ``get_model`` does.

Unlike upstream's ``config/models.py`` no field is required: under zencfg 1.0.0 a
required field without default (upstream's ``ModelConfig.arch``) makes every
subclass fail to instantiate.

``rank`` is ``Union[int, float]`` because tensorly-torch reads the two differently: an
int is the factorization's rank (``--model.rank 8``), a float the fraction of the dense
weight's parameters kept, in (0, 1] (``--model.rank 0.5``; ``1.0``: as many as the dense
weight). A float field would turn ``8`` into the fraction 8.0.
"""
import types
from typing import List, Optional, Union

from zencfg import ConfigBase

from neuralop_mp.precision_policy import PrecisionPolicy


def _model_config_body(namespace):
    # the plugin's keys are PrecisionPolicy's fields (same names, types and defaults), so
    # a new plugin model key is declared once, in PrecisionPolicy
    fields = PrecisionPolicy.config_fields()
    namespace["__annotations__"] = {"model_arch": str, "data_channels": int, "out_channels": int,
                                    **{key: config_type for key, (config_type, _, _) in fields.items()}}
    # None (= "none") | "fourier" | "block": see neuralop_mp.models.recompute
    namespace["__annotations__"]["recompute"] = Optional[str]
    # "block" only: grid points per slice of the lifting/projection replay (None: the default)
    namespace["__annotations__"]["recompute_chunk_points"] = Optional[int]
    namespace.update(model_arch="fno", data_channels=1, out_channels=1, recompute=None,
                     recompute_chunk_points=None)
    namespace.update({key: default for key, (_, default, _) in fields.items()})
    namespace["__doc__"] = (
        "Fields shared by every model section.\n\n"
        "Select a subclass on the command line by its class name, e.g. ``--model TFNOConfig``\n"
        "(this starts from that class's own defaults). The plugin's keys:\n\n"
        + "\n".join(f"- ``{key}``: {help}" for key, (_, _, help) in fields.items())
    )
    namespace["__module__"] = __name__
    namespace["__qualname__"] = "ModelConfig"


ModelConfig = types.new_class("ModelConfig", (ConfigBase,), exec_body=_model_config_body)


class FNOConfig(ModelConfig):
    """Arguments of :class:`neuralop.models.FNO` (dense spectral weights by default)."""

    model_arch: str = "fno"
    n_modes: List[int] = [16, 16]
    hidden_channels: int = 32
    n_layers: int = 4
    lifting_channel_ratio: float = 2
    projection_channel_ratio: float = 2
    positional_embedding: Optional[str] = "grid"
    norm: Optional[str] = None
    use_channel_mlp: bool = True
    channel_mlp_expansion: float = 0.5
    channel_mlp_dropout: float = 0.0
    channel_mlp_skip: Optional[str] = "soft-gating"
    fno_skip: Optional[str] = "linear"
    domain_padding: Optional[float] = None
    factorization: Optional[str] = None
    rank: Union[int, float] = 1.0
    fixed_rank_modes: bool = False
    implementation: str = "factorized"
    separable: bool = False
    preactivation: bool = False


class TFNOConfig(FNOConfig):
    """:class:`neuralop.models.TFNO`: an FNO with Tucker-factorized spectral weights."""

    model_arch: str = "tfno"
    factorization: Optional[str] = "Tucker"
    rank: Union[int, float] = 0.1


class UNOConfig(ModelConfig):
    """Arguments of the U-shaped neural operator (registered as ``"uno"`` by the plugin).

    ``uno_out_channels``, ``uno_n_modes`` and ``uno_scalings`` give one entry per
    layer; the defaults describe a 2D, 4-layer U (down, down, up, up).
    """

    model_arch: str = "uno"
    hidden_channels: int = 32
    lifting_channels: int = 64
    projection_channels: int = 64
    positional_embedding: Optional[str] = "grid"
    n_layers: int = 4
    uno_out_channels: List[int] = [32, 64, 64, 32]
    uno_n_modes: List[List[int]] = [[8, 8], [4, 4], [4, 4], [8, 8]]
    uno_scalings: List[List[float]] = [[1.0, 1.0], [0.5, 0.5], [2.0, 2.0], [1.0, 1.0]]
    channel_mlp_dropout: float = 0.0
    channel_mlp_expansion: float = 0.5
    norm: Optional[str] = None
    preactivation: bool = False
    fno_skip: Optional[str] = "linear"
    horizontal_skip: Optional[str] = "linear"
    # "soft-gating" (upstream's default) needs equal in/out widths in every layer
    channel_mlp_skip: Optional[str] = "linear"
    separable: bool = False
    factorization: Optional[str] = None
    rank: Union[int, float] = 1.0
    fixed_rank_modes: bool = False
    implementation: str = "factorized"
    domain_padding: Optional[float] = None
