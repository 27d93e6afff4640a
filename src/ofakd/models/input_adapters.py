"""Pass the input of named submodules through adapters for the length of a ``with`` block.

``with adapted_inputs(model, [("blocks.0", prompt), ...]): model(x)`` runs the model's own forward (timm's
``forward_intermediates`` included) with each named module's first positional input replaced by
``adapter(input)`` before the module runs. Forward pre-hooks do it, registered on entry and removed on exit
(as :class:`~ofakd.models.tap.ModelTap` takes stage features with forward hooks): the model's code and
attributes are never changed, so no per-architecture forward is needed. Adapters on the same module run in
the order given.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn

from ..errors import ModelError
from ..suggest import close_matches

Adapter = Callable[[torch.Tensor], torch.Tensor]


@contextlib.contextmanager
def adapted_inputs(model: nn.Module, adapters: Sequence[tuple[str, Adapter]]) -> Iterator[None]:
    """Within the block, the first input of each named submodule of ``model`` goes through its adapter."""
    known = dict(model.named_modules())
    for name, _ in adapters:
        if name not in known:
            close = close_matches(name, [n for n in known if n], n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ModelError(f"{type(model).__name__} has no module {name!r}{hint} to adapt the input of")
    handles = []
    try:
        for name, adapter in adapters:
            handles.append(known[name].register_forward_pre_hook(
                lambda _module, args, adapter=adapter: (adapter(args[0]), *args[1:])
            ))
        yield
    finally:
        for handle in handles:
            handle.remove()
