"""ofakd: distil any image classifier into any other, across architecture families.

Public API::

    teacher = ofakd.create_model("deit_tiny_patch16_224", num_classes=100, checkpoint="teacher.pth")
    student = ofakd.create_model("resnet18", num_classes=100)
    distiller = ofakd.create_distiller("ofa", teacher=teacher, student=student, eps=[1.5])
    logits, losses = distiller(images, targets)
    run_folder = ofakd.fit(distiller, train_set, val_set, epochs=30, lr=1e-3)   # any torch Datasets
"""

__version__ = "0.1.0"

_PUBLIC = {"cka": "analysis.stage_cka", "create_distiller": "distill", "list_methods": "distill",
           "OfakdError": "errors", "create_model": "models", "fit": "engine.given_datasets"}
"""Public name -> its module, imported on first use: ``import ofakd.cli`` stays light, so the
command line imports torch inside ``main``, where a Ctrl-C is one line, not a traceback."""

__all__ = ["OfakdError", "cka", "create_distiller", "create_model", "fit", "list_methods"]


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'ofakd' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})

