"""Training engine: the loop, evaluation, checkpoints, AMP, EMA, several processes, logging.

    from ofakd.config import load_config
    from ofakd.engine import fit
    summary = fit(load_config("demo", [("student.name", "resnet18")]))

The engine knows nothing of a particular method: it calls ``distiller(images, targets)`` and sums
the returned losses. Files: ``setup`` (the one builder of a run's student, teacher source, data and
distiller, from the config or from objects given in Python), ``loop`` (one epoch), ``evaluate`` (the one evaluation: training, ``ofakd eval`` and :mod:`ofakd.evaluation`
use it), ``preemption`` (SIGTERM/SIGINT -> recovery checkpoint, exit 75), ``numerics`` (NaN/inf: stop
or skip), ``metrics_log``, ``progress``, ``optim``, ``amp`` (autocast, GradScaler), ``device``,
``seeding``, ``state``, ``trainer`` (orchestration), ``resume`` (continuing from ``last.pt``), ``saving``
(``last.pt``, ``best.safetensors``), ``run_summary`` (the run's log line, ``summary.json``), ``given_datasets``
(``ofakd.fit``: a distiller and torch Datasets given in Python, through the same builder and trainer); several processes: ``launch`` (torchrun's process
group), ``processes`` (rank, collectives), ``ddp`` (DDP, SyncBatchNorm, compile, channels-last). What a
run writes (config.yaml, last.pt, best.safetensors, ...) and how: :mod:`ofakd.run_folder`.

Under torchrun::

    from ofakd.engine.launch import distributed
    with distributed(cfg.train.device, timeout_s=cfg.train.dist_timeout) as dist:
        summary = fit(cfg, dist=dist)
"""

from .evaluate import evaluate
from .processes import DistContext
from .trainer import Trainer, fit, run_folder_hint, run_name

__all__ = ["DistContext", "Trainer", "evaluate", "fit", "run_folder_hint", "run_name"]
