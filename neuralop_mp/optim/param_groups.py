"""Param groups that give an FNO's spectral weights to TensorGRaD and the rest to AdamW."""
from neuralop.layers.spectral_convolution import SpectralConv


def spectral_parameters(model, min_params=1000):
    """Trainable parameters of every ``SpectralConv`` in ``model`` with at least
    ``min_params`` entries (the spectral weights; biases are far smaller).

    A dense spectral weight is a tltorch ``DenseTensor`` whose ``nn.Parameter``
    is ``weight.tensor``; factorized ones (TFNO) hold their core and factors as
    parameters. ``module.parameters()`` reaches all of them, so the selection
    works for any factorization and for subclasses such as
    :class:`~neuralop_mp.MixedPrecisionSpectralConv`.
    """
    seen, selected = set(), []
    for module in model.modules():
        if isinstance(module, SpectralConv):
            for param in module.parameters():
                if param.requires_grad and param.numel() >= min_params and id(param) not in seen:
                    seen.add(id(param))
                    selected.append(param)
    return selected


def fno_tensorgrad_param_groups(model, rank=0.25, sparse_ratio=None, min_params=1000, update_proj_gap=50,
                                scale=1.0, sparse_scale=1.0, sparse_type="randk", lambda_sparse=1.0,
                                warm_restart=True, **settings):
    """Two param groups for :class:`~neuralop_mp.TensorGRaD`: ``[regular, spectral]``.

    Same signature and result layout as upstream neuraloperator's helper (main
    branch): the second group holds the spectral-convolution parameters with at
    least ``min_params`` entries and ``tensorgrad=True``; the first holds every
    other trainable parameter (plain AdamW). With ``sparse_ratio=None`` the
    spectral group is low-rank only, as upstream's. Spectral layers are found
    anywhere in the model (FNO, TFNO, UNO, wrapped in ``DataParallel``), not only
    under ``model.fno_blocks.convs``.

    Parameters
    ----------
    model : nn.Module
        A model containing ``SpectralConv`` layers.
    rank, sparse_ratio, update_proj_gap, scale, sparse_scale, sparse_type, lambda_sparse, warm_restart
        Settings of the spectral group (see :class:`~neuralop_mp.TensorGRaD`).
    min_params : int, default 1000
        Smallest number of entries a spectral parameter needs to be compressed.
    **settings
        Further TensorGRaD group keys for the spectral group (``order``,
        ``rank_convention``, ``state_dtype``, ``reset_sparse_moments``, ...); they
        override upstream's defaults that a ``tensorgrad`` group otherwise gets.

    Returns
    -------
    list of dict
    """
    module = getattr(model, "module", model)
    spectral = spectral_parameters(module, min_params)
    if not spectral:
        raise ValueError(
            f"No SpectralConv parameter of {type(module).__name__} has >= min_params={min_params} entries."
        )
    ids = {id(p) for p in spectral}
    regular = [p for p in module.parameters() if p.requires_grad and id(p) not in ids]
    group = {
        "params": spectral,
        "tensorgrad": True,
        "rank": rank,
        "update_proj_gap": update_proj_gap,
        "scale": scale,
        "warm_restart": warm_restart,
        "min_params": min_params,
    }
    if sparse_ratio is not None:
        group.update(sparse_ratio=sparse_ratio, sparse_type=sparse_type, sparse_scale=sparse_scale,
                     lambda_sparse=lambda_sparse)
    group.update(settings)
    return [{"params": regular}, group]
