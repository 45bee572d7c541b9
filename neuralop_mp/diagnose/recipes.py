"""The precision-vs-discretization table of the training recipes, in one command.

``neuralop-mp diagnose CONFIG --recipe-table [--archs FNOConfig,TFNOConfig]
[--resolutions 64,128] [--key value ...]`` builds the config's model for every
architecture and resolution N (seeded, untrained), measures it on built-in data at 2N
(:func:`~neuralop_mp.diagnose.measure.measure`), and prints a markdown table of the
model-output precision error of each recipe (16-bit type, spectral layers only or with
autocast, with or without tanh) next to the discretization error (N vs 2N restricted).
"""
import torch

from .measure import measure, variant_name

RECIPES = [(dtype, autocast, tanh) for dtype in ("bfloat16", "float16") for autocast in (False, True)
           for tanh in (False, True)]


def _recipe_label(dtype, autocast, tanh):
    where = "spectral + autocast" if autocast else "spectral only"
    return f"{'bf16' if dtype == 'bfloat16' else 'fp16'}, {where}{', tanh' if tanh else ''}"


def recipe_rows(target, overrides, archs, resolutions, n_samples, fine_inputs):
    """``[(arch, N, discretization error, {recipe label: error})]`` for each arch and N."""
    from ..configs import load_config
    from ..models.registry import get_model
    from ..train_pipeline import section_kwargs

    rows = []
    for arch in archs:
        for n in resolutions:
            config = load_config(target, list(overrides) + ["--model", arch, "--data.train_resolution", str(n)])
            torch.manual_seed(config.seed)
            model = get_model(config, mixed_precision_layer=True)
            x_fine = fine_inputs(config.data.loader_name(), section_kwargs(config.data), n, n_samples)
            diagnosis = measure(model, x_fine, modes=("mixed",), n_bands=1)
            errors = {_recipe_label(*r): diagnosis["model"]["precision"][variant_name("mixed", r[0], r[2], r[1])]["error"]
                      for r in RECIPES}
            rows.append((arch.replace("Config", ""), n, diagnosis["model"]["discretization_error"], errors))
    return rows


def format_recipe_table(rows):
    """Markdown: one row per (arch, N, recipe), with the ratio precision / discretization error."""
    lines = ["| model | N | recipe | precision error | discretization error | ratio |",
             "|---|---|---|---|---|---|"]
    for arch, n, disc, errors in rows:
        for label, error in errors.items():
            lines.append(f"| {arch} | {n} | {label} | {error:.2e} | {disc:.2e} | {error / disc:.2g} |")
    return "\n".join(lines)
