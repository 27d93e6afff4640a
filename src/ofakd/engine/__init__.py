"""Training engine: the loop, evaluation, checkpoints, run folders, AMP, EMA, logging.

    from ofakd.config import load_config
    from ofakd.engine import fit
    summary = fit(load_config("demo", [("student.name", "resnet18")]))

The engine knows nothing of a particular method: it calls ``distiller(images, targets)`` and sums
the returned losses. Files: ``setup`` (config -> student, teacher source, data, distiller), ``loop``
(one epoch), ``evaluate``, ``checkpoint`` (atomic, verified saves; last.pt / last.prev.pt),
``preemption`` (SIGTERM/SIGINT -> recovery checkpoint, exit 75), ``numerics`` (NaN/inf: stop or
skip), ``run_folder``, ``metrics_log``, ``progress``, ``optim``, ``amp`` (autocast, GradScaler),
``seeding``, ``state``, ``trainer`` (orchestration); several processes: ``launch`` (torchrun's process
group), ``processes`` (rank, collectives), ``ddp`` (DDP, SyncBatchNorm, compile, channels-last).

Under torchrun::

    from ofakd.engine.launch import distributed
    with distributed(cfg.train.device, timeout_s=cfg.train.dist_timeout) as dist:
        summary = fit(cfg, dist=dist)
"""

from .evaluate import evaluate
from .processes import DistContext
from .trainer import Trainer, fit, run_name

__all__ = ["DistContext", "Trainer", "evaluate", "fit", "run_name"]
