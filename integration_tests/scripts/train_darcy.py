"""Stand-in for neuraloperator's scripts/train_darcy.py (same structure, tiny sizes).

Written by us to follow upstream's current script layout: a zencfg ``Default``
config read from the command line, ``setup(config)``, ``load_darcy_flow_small``,
``get_model(config)``, ``AdamW`` from ``neuralop.training``, a scheduler, H1/L2
losses and ``Trainer``. It knows nothing about neuralop-mp: run it with
``neuralop-mp run train_darcy.py --mp.precision mixed -- --opt.n_epochs 2``.
"""
import sys
from pathlib import Path

import torch
from zencfg import make_config_from_cli

from neuralop import H1Loss, LpLoss, Trainer, get_model
from neuralop.data.datasets import load_darcy_flow_small
from neuralop.training import AdamW, setup
from neuralop.utils import count_model_params

# upstream inserts "../" (its config/ is a sibling of scripts/); ours sits beside the script
from config.darcy_config import Default

config = make_config_from_cli(Default)
config = config.to_dict()

device, is_logger = setup(config)
config.verbose = config.verbose and is_logger

if config.verbose:
    print("##### CONFIG #####\n")
    print(config)
    sys.stdout.flush()

data_root = Path(config.data.folder).expanduser()
train_loader, test_loaders, data_processor = load_darcy_flow_small(
    data_root=data_root,
    n_train=config.data.n_train,
    batch_size=config.data.batch_size,
    test_resolutions=config.data.test_resolutions,
    n_tests=config.data.n_tests,
    test_batch_sizes=config.data.test_batch_sizes,
    encode_input=config.data.encode_input,
    encode_output=config.data.encode_output,
)

model = get_model(config)
model = model.to(device)
data_processor = data_processor.to(device)

optimizer = AdamW(
    model.parameters(),
    lr=config.opt.learning_rate,
    weight_decay=config.opt.weight_decay,
)
scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.opt.step_size, gamma=config.opt.gamma)

l2loss = LpLoss(d=2, p=2)
h1loss = H1Loss(d=2)
train_loss = h1loss if config.opt.training_loss == "h1" else l2loss
eval_losses = {"h1": h1loss, "l2": l2loss}

if config.verbose:
    print(f"\nn_params: {count_model_params(model)}")
    print("\n### OPTIMIZER ###\n", optimizer)
    print("\n### Beginning Training...\n")
    sys.stdout.flush()

trainer = Trainer(
    model=model,
    n_epochs=config.opt.n_epochs,
    data_processor=data_processor,
    device=device,
    mixed_precision=config.opt.mixed_precision,
    eval_interval=config.opt.eval_interval,
    log_output=config.wandb.log_output,
    use_distributed=config.distributed.use_distributed,
    verbose=config.verbose,
    wandb_log=config.wandb.log,
)

trainer.train(
    train_loader=train_loader,
    test_loaders=test_loaders,
    optimizer=optimizer,
    scheduler=scheduler,
    regularizer=False,
    training_loss=train_loss,
    eval_losses=eval_losses,
)
