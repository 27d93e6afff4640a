"""The run folder of a run, claimed by the main process for the run's life: one writer per folder.

The main process (rank 0 under torchrun) creates or opens the folder, locks it
(:class:`~ofakd.run_folder.lock.FolderLock`, held until the run ends) and checks it; the other
processes learn whether that worked and, when it did not, stop with an error instead of waiting
for rank 0 at the next collective.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import ConfigError, OfakdError
from ..run_folder import FolderLock, RunFolder, sanitize_name
from .processes import DistContext


def claim_run_folder(out_dir: str | Path, name: str, *, resume: str | Path | None, overwrite: bool,
                     dist: DistContext, device: torch.device) -> tuple[RunFolder, FolderLock | None]:
    """(the run folder, its lock: held by the main process, None on the others)."""
    folder, lock, error = None, None, None
    if dist.is_main:
        try:
            folder, lock = (RunFolder.claim_existing(resume) if resume is not None
                            else RunFolder.claim(out_dir, name, overwrite=overwrite))
        except OfakdError as err:
            error = err
    if dist.distributed:  # every process takes part, so none waits for a main process that stopped
        failed = dist.sum(torch.tensor([float(error is not None)], device=device)).item() > 0
        if failed and error is None:
            raise ConfigError("the main process (rank 0) could not claim the run folder; its error line says why")
    if error is not None:
        raise error
    if folder is None:
        folder = RunFolder(Path(resume)) if resume is not None else RunFolder(Path(out_dir) / sanitize_name(name))
    return folder, lock
