"""Time the default data generation and measure the solvers' validation errors.

Run ``python -m neuralop_mp.data.benchmark``: the results go to ``--out DIR`` (default
``./runs/bench-data-generation-TIMESTAMP``); ``--update-docs`` also rewrites the section
``data-generation`` of docs/benchmarks.md, from a checkout (numbers quoted in docs/data.md
come from there).
"""
import math
import tempfile
import time

import numpy as np
import torch

from ..vocabulary import OneLineErrorParser
from ..bench.report import add_output_arguments, header, markdown_table, write_results
from .burgers import generate_burgers, initial_condition, solve_burgers
from .darcy import generate_darcy, permeability, solve_darcy, solver_grid, vertex_grid
from .grf import sample_seed
from .navier_stokes import benchmark_forcing, generate_navier_stokes, initial_vorticity, solve_vorticity

COMMAND = "python -m neuralop_mp.data.benchmark"


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def generation_times(root):
    """Seconds to generate each dataset at its default size (cold cache)."""
    return [
        dict(dataset="darcy 16+32, 1000+200 each", seconds=_timed(lambda: generate_darcy(root, progress=False))),
        dict(dataset="darcy 16+32, 500+100 each (test fixture)",
             seconds=_timed(lambda: generate_darcy(root + "/small", n_train=500, n_test=100, progress=False))),
        dict(dataset="navier_stokes 32 (solved 32, T=10), 400+100",
             seconds=_timed(lambda: generate_navier_stokes(root, progress=False))),
        dict(dataset="burgers 16 (solved 128, 17 times), 800+200",
             seconds=_timed(lambda: generate_burgers(root, progress=False))),
    ]


def darcy_orders():
    """Max error of the manufactured solution and observed orders, harmonic faces."""
    errors = []
    for res in (17, 33, 65, 129):
        x = vertex_grid(res)
        X, Y = np.meshgrid(x, x, indexing="ij")
        pi = math.pi
        a = 1 + 0.5 * np.sin(2 * pi * X) * np.cos(pi * Y)
        u = np.sin(pi * X) * np.sin(pi * Y)
        f = -(a * (-2 * pi**2 * u) + pi * np.cos(2 * pi * X) * np.cos(pi * Y) * pi * np.cos(pi * X) * np.sin(pi * Y)
              - 0.5 * pi * np.sin(2 * pi * X) * np.sin(pi * Y) * pi * np.sin(pi * X) * np.cos(pi * Y))
        errors.append((res, float(np.abs(solve_darcy(a, f) - u).max())))
    return [dict(check=f"darcy manufactured, res {r}", value=e,
                 order=(math.log2(errors[i - 1][1] / e) if i else None)) for i, (r, e) in enumerate(errors)]


def darcy_label_errors(root, n_samples=8, reference_points=481, solver_grids=(121, 241)):
    """Relative L2 error of the stored Darcy labels (mean and max over the first test samples of
    seed 0) against the same solver on a nested fine grid, and the seconds per sample of each
    solver grid.

    The reference for ``res`` is solved on ``(res - 1) k + 1 >= reference_points`` points
    (481 at 16, 497 at 32), the permeability sampled there, and kept at every ``k``-th vertex;
    the labels are those :func:`generate_darcy` writes: the default (solved on the stored grid,
    harmonic and arithmetic face averages) and with each ``solver_resolution`` of ``solver_grids``.
    """
    rows = []
    for res in (16, 32):
        n_reference, stride = solver_grid(res, reference_points)  # the generator's own nesting rule
        seeds = [sample_seed(0, "test", i) for i in range(n_samples)]
        reference = [solve_darcy(permeability([s], n_reference)[0].numpy())[::stride, ::stride] for s in seeds]
        variants = [("default", {}), ("default, arithmetic faces", dict(face_average="arithmetic"))]
        variants += [(f"solver grid {n}", dict(solver_resolution=n)) for n in solver_grids]
        for name, settings in variants:
            folder = f"{root}/{res}-{name}"
            seconds = _timed(lambda: generate_darcy(folder, resolutions=(res,), n_train=0, n_test=n_samples,
                                                    progress=False, **settings))
            data = torch.load(f"{folder}/darcy_test_{res}.pt", weights_only=False)
            errors = [float(np.linalg.norm(y.double().numpy() - ref) / np.linalg.norm(ref))
                      for y, ref in zip(data["y"], reference)]
            solved = data["meta"].get("solver_resolution", res)
            rows.append(dict(check=f"darcy {res} labels, {name} (solved {solved} pts) vs nested "
                                   f"{n_reference} pts: relative L2, mean of {n_samples} samples",
                             value=float(np.mean(errors)), max=float(np.max(errors)),
                             seconds_per_sample=seconds / n_samples))
    return rows


def ns_checks():
    """Taylor-Green decay error and grid/time refinement of the default setting."""
    n = 32
    x = torch.arange(n, dtype=torch.float64) / n
    X, Y = torch.meshgrid(x, x, indexing="ij")
    w0 = (torch.sin(4 * math.pi * X) * torch.sin(4 * math.pi * Y))[None]
    w = solve_vorticity(w0, 1.0, 1e-2, dt=1e-2)
    ratio = ((w * w0).sum() / (w0 * w0).sum()).item()
    tg = abs(ratio / math.exp(-2 * 1e-2 * (4 * math.pi) ** 2) - 1)
    seeds = list(range(8))
    ref = solve_vorticity(initial_vorticity(seeds, 128), 10.0, 1e-3, benchmark_forcing(128), dt=0.0125)
    default = solve_vorticity(initial_vorticity(seeds, 32), 10.0, 1e-3, benchmark_forcing(32))
    ref = ref[:, ::4, ::4]  # on the default's grid: the norm of the whole fine grid is 4x larger
    refinement = ((default - ref).norm() / ref.norm()).item()
    return [dict(check="NS Taylor-Green k0=2, nu=1e-2, T=1: relative amplitude error", value=tg),
            dict(check="NS default (32 pts, dt 0.05, T=10) vs 128 pts, dt 0.0125: relative L2", value=refinement)]


def burgers_checks():
    """Refinement error of the default Burgers setting against a 1024-point run."""
    seeds = list(range(16))
    times = np.linspace(0, 1, 17)
    ref = solve_burgers(initial_condition(seeds, 1024), times, 0.01)
    default = solve_burgers(initial_condition(seeds, 128), times, 0.01)
    ref = ref[..., ::8]  # on the default's grid: the norm of the whole fine grid is sqrt(8)x larger
    err = ((default - ref).norm() / ref.norm()).item()
    return [dict(check="Burgers default (128 pts) vs 1024 pts, nu=0.01: relative L2", value=err)]


def main(argv=None):
    parser = OneLineErrorParser(prog=COMMAND, description=__doc__.splitlines()[0])
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as root:
        times = generation_times(root)
    checks = darcy_orders() + ns_checks() + burgers_checks()
    with tempfile.TemporaryDirectory() as root:
        darcy_labels = darcy_label_errors(root)
    body = "\n\n".join([
        header("Offline data generation", COMMAND),
        "Wall-clock seconds, cold cache, default sizes:",
        markdown_table(times, ["dataset", "seconds"]),
        "Solver validation:",
        markdown_table(checks, ["check", "value", "order"]),
        "Darcy labels against a nested fine solve (the permeability is discontinuous: order ~1.3):",
        markdown_table(darcy_labels, ["check", "value", "max", "seconds_per_sample"]),
    ])
    print(body)
    write_results("data-generation", body, dict(generation=times, validation=checks, darcy_labels=darcy_labels), out=args.out,
                  update_docs=args.update_docs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
