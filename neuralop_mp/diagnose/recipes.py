"""The precision-vs-discretization table of the training recipes, in one command.

``neuralop-mp diagnose CONFIG --recipe-table [--archs FNOConfig,TFNOConfig]
[--resolutions 64,128] [--key value ...]`` builds the config's model for every
architecture and resolution N (seeded, untrained), measures it on built-in data at 2N
(:func:`~neuralop_mp.diagnose.measure.measure`), and prints a markdown table of the
model-output precision error of each recipe (16-bit type, spectral layers only or with
autocast, with or without tanh; autocast confined by each autocast scope) next to the
discretization error (N vs 2N restricted).
"""
import torch

from ..layers.autocast_scope import autocast_scope
from ..layers.precision_switch import precision
from .bands import relative_error
from .measure import even_grid, measure, quiet_float16_cpu, restrict, variant_name

RECIPES = [(dtype, autocast, tanh) for dtype in ("bfloat16", "float16") for autocast in (False, True)
           for tanh in (False, True)]
# autocast confined to part of the model (neuralop_mp.layers.autocast_scope); "model" is the
# plain autocast of RECIPES
SCOPE_RECIPES = [(dtype, scope) for dtype in ("bfloat16", "float16") for scope in ("fno_blocks", "spectral")]


def _recipe_label(dtype, autocast, tanh):
    where = "spectral + autocast" if autocast else "spectral only"
    return f"{'bf16' if dtype == 'bfloat16' else 'fp16'}, {where}{', tanh' if tanh else ''}"


def _scope_label(dtype, scope):
    return f"{'bf16' if dtype == 'bfloat16' else 'fp16'}, spectral + autocast, scope {scope}"


@torch.no_grad()
def scope_errors(model, x):
    """``{label: error}``: model-output precision error of "mixed" under autocast with
    each scope of :data:`SCOPE_RECIPES`, against full precision without autocast."""
    model.eval()
    with precision(model, "full", stabilizer=None):
        reference = model(x).to(torch.float32)
    errors = {}
    for dtype, scope in SCOPE_RECIPES:
        with precision(model, "mixed", half_dtype=dtype, stabilizer=None), autocast_scope(model, scope), \
                quiet_float16_cpu(dtype):
            with torch.autocast(x.device.type, dtype=getattr(torch, dtype)):
                errors[_scope_label(dtype, scope)] = relative_error(model(x).to(torch.float32), reference)
    return errors


def recipe_rows(target, overrides, archs, resolutions, n_samples, fine_inputs, notes=None):
    """``[(arch, N, discretization error, {recipe label: error})]`` for each arch and N; an odd
    fine grid's note (:func:`~neuralop_mp.diagnose.measure.even_grid`) appended once to ``notes``."""
    from ..configs import load_config
    from ..models.registry import get_model
    from ..train_pipeline import section_kwargs

    rows = []
    for arch in archs:
        for n in resolutions:
            config = load_config(target, list(overrides) + ["--model", arch, "--data.train_resolution", str(n)])
            torch.manual_seed(config.seed)
            model = get_model(config, mixed_precision_layer=True)
            # evened here too: the scope errors below restrict it as measure does
            x_fine, dropped = even_grid(fine_inputs(config.data.loader_name(), section_kwargs(config.data), n,
                                                    n_samples, flag="--resolutions"))
            if dropped and notes is not None and dropped not in notes:
                notes.append(dropped)
            diagnosis = measure(model, x_fine, modes=("mixed",), n_bands=1)
            errors = {_recipe_label(*r): diagnosis["model"]["precision"][variant_name("mixed", r[0], r[2], r[1])]["error"]
                      for r in RECIPES}
            errors.update(scope_errors(model, restrict(x_fine, x_fine.ndim - 2).contiguous()))
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
