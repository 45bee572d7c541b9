"""Model sections of a training config (``config.model``).

Every field of a model section is a constructor argument of the model named by
``model_arch``, except the plugin's four precision keys (``fno_block_precision``,
``half_dtype``, ``stabilizer``, ``spectral_weight_dtype``), which
:func:`neuralop_mp.get_model` turns into the mixed-precision spectral layer and its
settings, and ``data_channels``, which becomes ``in_channels`` (times
``patching.levels + 1``) exactly as upstream's ``get_model`` does.

Unlike upstream's ``config/models.py`` no field is required: under zencfg 1.0.0 a
required field without default (upstream's ``ModelConfig.arch``) makes every
subclass fail to instantiate.
"""
from typing import List, Optional

from zencfg import ConfigBase


class ModelConfig(ConfigBase):
    """Fields shared by every model section.

    Select a subclass on the command line by its class name, e.g.
    ``--model TFNOConfig`` (this starts from that class's own defaults).
    """

    model_arch: str = "fno"
    data_channels: int = 1
    out_channels: int = 1
    # plugin: precision of the spectral convolutions ("full" | "mixed" | "half")
    fno_block_precision: str = "full"
    # plugin: half type of "mixed"/"half" ("auto": float16 on CUDA, bfloat16 on CPU)
    half_dtype: str = "auto"
    # plugin: pre-activation before every forward FFT (None | "tanh")
    stabilizer: Optional[str] = None
    # plugin: storage of the spectral weights and their gradients ("complex64" | "complex32")
    spectral_weight_dtype: str = "complex64"


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
    rank: float = 1.0
    fixed_rank_modes: bool = False
    implementation: str = "factorized"
    separable: bool = False
    preactivation: bool = False


class TFNOConfig(FNOConfig):
    """:class:`neuralop.models.TFNO`: an FNO with Tucker-factorized spectral weights."""

    model_arch: str = "tfno"
    factorization: Optional[str] = "Tucker"
    rank: float = 0.1


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
    rank: float = 1.0
    fixed_rank_modes: bool = False
    implementation: str = "factorized"
    domain_padding: Optional[float] = None
