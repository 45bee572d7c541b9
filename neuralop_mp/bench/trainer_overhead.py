"""Benchmark: what MixedPrecisionTrainer adds to an epoch over upstream's Trainer in full precision.

The same FNO, data, seed, Adam and step schedule train for a few epochs under upstream's
``neuralop.training.Trainer`` and under ``MixedPrecisionTrainer`` without a schedule, loss
scaling or autocast (what the plugin costs a user who trains as before), one after the other in
one process, alternating which goes first, for several repeats. Each repeat times the whole
``train()`` call (no evaluation: no test loader) in CPU seconds of the process (with one thread
the busy machine's other jobs do not count) and in wall seconds, and the training epochs one by
one. What ours does on top: the non-finite guard (a check of every gradient before the step and
of every weight after it), the CPU memory meters on the first batch of the epochs whose setting is
new (:meth:`~neuralop_mp.training.trainer.MixedPrecisionTrainer._memory_needs_measuring`), and the
per-batch bookkeeping of the history.

Usage: ``neuralop-mp bench trainer [--quick] [--repeats N] [--threads N|auto] [--out DIR] [--update-docs]``.
"""
import gc
import statistics
import sys
import time

import torch

from ..data.cli import positive_int
from ..vocabulary import OneLineErrorParser, ignoring_upstream_unused_keys
from .cli import threads_type
from .report import (add_output_arguments, markdown_table, refuse_partial_docs_update, shown_command,
                     timed_section, write_results)

#: the rows: FNO hidden channels, grid size, batches per epoch, batch size, epochs. The first is
#: docs/training.md's case (a tiny model on one core), the second a larger one
SIZES = ({"channels": 32, "res": 16, "batches": 8, "batch": 8, "epochs": 4},
         {"channels": 64, "res": 32, "batches": 8, "batch": 8, "epochs": 4})
QUICK_SIZES = ({"channels": 8, "res": 8, "batches": 2, "batch": 2, "epochs": 2},)
TRAINERS = ("upstream", "ours")


class _Data(torch.utils.data.Dataset):
    def __init__(self, n, res, seed):
        generator = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 1, res, res, generator=generator)
        self.y = torch.randn(n, 1, res, res, generator=generator)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "y": self.y[i]}


def _timed(trainer_class):
    """``trainer_class`` with each ``train_one_epoch`` call's CPU and wall seconds appended to
    ``epoch_times`` (what the epoch loop, ours included, runs between upstream's epochs)."""

    class Timed(trainer_class):
        def train_one_epoch(self, epoch, train_loader, training_loss):
            cpu, wall = time.process_time(), time.perf_counter()
            try:
                return super().train_one_epoch(epoch, train_loader, training_loss)
            finally:
                self.epoch_times.append((time.process_time() - cpu, time.perf_counter() - wall))

    Timed.__name__ = f"Timed{trainer_class.__name__}"
    return Timed


def train_once(which, size, seed=0):
    """Train a fresh model of ``size`` under ``which`` ("upstream" or "ours"); returns
    ``(cpu s, wall s, [(cpu s, wall s) per epoch], optimizer steps, final weights)``."""
    from neuralop.losses import LpLoss
    from neuralop.models import FNO
    from neuralop.training import Trainer

    from ..training.trainer import MixedPrecisionTrainer

    torch.manual_seed(seed)
    model = FNO(n_modes=(8, 8), in_channels=1, out_channels=1, hidden_channels=size["channels"])
    loader = torch.utils.data.DataLoader(_Data(size["batches"] * size["batch"], size["res"], seed),
                                         batch_size=size["batch"], shuffle=False)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=10)
    steps = []
    optimizer.register_step_post_hook(lambda *_: steps.append(1))
    trainer = _timed(Trainer if which == "upstream" else MixedPrecisionTrainer)(
        model=model, n_epochs=size["epochs"], device="cpu", verbose=False)
    trainer.epoch_times = []
    loss = LpLoss(d=2)
    gc.collect()  # the other trainer's garbage is not this one's time
    cpu, wall = time.process_time(), time.perf_counter()
    trainer.train(loader, {}, optimizer, scheduler, training_loss=loss, eval_losses={"l2": loss})
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return cpu, wall, trainer.epoch_times, len(steps), [p.detach().clone() for p in model.parameters()]


def _spread(values):
    return f"{statistics.median(values):.3f} [{min(values):.3f}, {max(values):.3f}]"


def measure(size, repeats):
    """One row: ``repeats`` interleaved pairs (after one pair not counted, which warms up both),
    their medians, spreads and ratios."""
    times = {which: [] for which in TRAINERS}
    steps, same_weights = {}, True
    for repeat in range(repeats + 1):
        order = TRAINERS if repeat % 2 == 0 else TRAINERS[::-1]  # neither always runs first
        weights = {}
        for which in order:
            cpu, wall, epochs, steps[which], weights[which] = train_once(which, size)
            if repeat:
                times[which].append((cpu, wall, epochs))
        same_weights &= all(torch.equal(a, b) for a, b in zip(weights["upstream"], weights["ours"]))
    ratios = {which: [] for which in ("cpu", "wall", "late")}
    for (u_cpu, u_wall, u_epochs), (o_cpu, o_wall, o_epochs) in zip(times["upstream"], times["ours"]):
        ratios["cpu"].append(o_cpu / u_cpu)
        ratios["wall"].append(o_wall / u_wall)
        if len(u_epochs) > 2:  # the epochs after the first two (which the meters watch here)
            ratios["late"].append(sum(e[0] for e in o_epochs[2:]) / sum(e[0] for e in u_epochs[2:]))
    per_epoch = {which: [run[0] / size["epochs"] for run in times[which]] for which in TRAINERS}
    row = {"model": f"FNO {size['channels']} ch, 8x8 modes", "grid": f"{size['res']}^2",
           "batches": f"{size['batches']} x {size['batch']}", "epochs": size["epochs"],
           "upstream CPU s/epoch": _spread(per_epoch["upstream"]), "ours CPU s/epoch": _spread(per_epoch["ours"]),
           "ours / upstream (CPU)": _spread(ratios["cpu"]), "ours / upstream (wall)": _spread(ratios["wall"]),
           "epochs 3+ (CPU)": _spread(ratios["late"]) if ratios["late"] else None,
           "steps": f"{steps['upstream']} / {steps['ours']}", "same weights": "yes" if same_weights else "no"}
    data = {"size": size, "repeats": repeats, "steps": steps, "same_weights": same_weights,
            "ratio_cpu_median": statistics.median(ratios["cpu"]),
            "ratio_wall_median": statistics.median(ratios["wall"]),
            "ratio_late_epochs_median": statistics.median(ratios["late"]) if ratios["late"] else None,
            "runs": {which: [{"cpu_s": c, "wall_s": w, "epochs_cpu_s": [e[0] for e in ep],
                              "epochs_wall_s": [e[1] for e in ep]} for c, w, ep in times[which]]
                     for which in TRAINERS}}
    return row, data


COLUMNS = ["model", "grid", "batches", "epochs", "upstream CPU s/epoch", "ours CPU s/epoch", "ours / upstream (CPU)",
           "ours / upstream (wall)", "epochs 3+ (CPU)", "steps", "same weights"]


def run(quick=False, repeats=None):
    """Measure every row; returns (markdown table, rows' data)."""
    repeats = (1 if quick else 7) if repeats is None else repeats
    rows, data = [], []
    for size in QUICK_SIZES if quick else SIZES:
        row, measured = measure(size, repeats)
        # progress: each row as it is measured (the table comes at the end)
        print(f"{row['model']}, {row['grid']}: ours / upstream {row['ours / upstream (CPU)']} (CPU seconds), "
              f"same weights: {row['same weights']}", file=sys.stderr, flush=True)
        rows.append(row)
        data.append(measured)
    return markdown_table(rows, COLUMNS), data


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = OneLineErrorParser(prog="neuralop-mp bench trainer", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one tiny row, 2 epochs, 1 repeat (seconds)")
    parser.add_argument("--repeats", type=positive_int, default=None,
                        help="timed pairs of runs per row, after one warm-up pair (default 7; --quick: 1)")
    parser.add_argument("--threads", type=threads_type, default=1, metavar="N|auto",
                        help="torch intra-op threads (default 1: the tiny case of docs/training.md; auto: the CPUs "
                             "other processes leave idle)")
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    refuse_partial_docs_update(parser, "trainer", args, {"--quick": args.quick})  # a tiny run is not the table
    torch.set_num_threads(args.threads)
    with ignoring_upstream_unused_keys():  # upstream's model warns of the "y" it is passed, once per batch
        table, data = run(quick=args.quick, repeats=args.repeats)
    repeats = data[0]["repeats"]
    description = (
        "Upstream's `neuralop.training.Trainer` against `MixedPrecisionTrainer` in full precision (no schedule, no "
        "loss scaling, no autocast): the same FNO (upstream's, 4 layers), data (random fields), seed, Adam (lr "
        "1e-3) and StepLR, no evaluation. Each row: one warm-up pair, then "
        f"{repeats} pair{'s' if repeats != 1 else ''} of runs in one process, alternating which trainer goes "
        "first; median [min, max]. "
        "s/epoch: CPU seconds of the whole `train()` call over its epochs. The ratios are per pair: of the whole "
        "call's CPU and wall seconds, and of the CPU seconds of the epochs after the first two (in this setting "
        "the CPU memory meters watch the first batch of epochs 1 and 2 only: the first step creates Adam's state, "
        "so the second's peak differs; docs/training.md, History). steps: optimizer steps taken (upstream / "
        "ours); same weights: whether both trainers ended with bit-identical weights in every pair.")
    body = timed_section("Trainer overhead: MixedPrecisionTrainer vs upstream's Trainer (full precision, CPU)",
                         shown_command("neuralop-mp bench trainer", argv), description, table)
    print(body)
    write_results("trainer", body, {"rows": data, "threads": torch.get_num_threads()}, out=args.out,
                  update_docs=args.update_docs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
