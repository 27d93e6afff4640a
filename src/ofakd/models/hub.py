"""Pretrained weights through timm and the Hugging Face Hub: which repo a name loads, and one-line errors.

``create_model("resnet50.a1_in1k", pretrained=True)`` and ``create_model("hf-hub:org/name")`` go through
timm's own loader, which asks ``huggingface_hub`` for the files: the Hub cache (``HF_HOME``,
``HF_HUB_CACHE``), offline mode (``HF_HUB_OFFLINE=1``), mirrors (``HF_ENDPOINT``) and tokens behave as
Hugging Face users know. Here only the failures are turned into one line that names the repo, the cache
folder and how to pre-download the files (or use a local file instead).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from urllib.error import URLError

from ..errors import ModelError

HF_HUB_PREFIX = "hf-hub:"


def hub_repo(name: str) -> str | None:
    """The Hub repo whose files ``name`` loads: ``org/name`` of ``hf-hub:org/name[@revision]``, or the
    ``hf_hub_id`` of a timm architecture's pretrained tag (its default tag when none is given)."""
    if name.startswith(HF_HUB_PREFIX):
        return name[len(HF_HUB_PREFIX):].split("@")[0]
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    return getattr(cfg, "hf_hub_id", None) or None


def hub_cache_dir() -> str:
    """The folder huggingface_hub keeps downloaded repos in (``HF_HUB_CACHE``, by default ``$HF_HOME/hub``)."""
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def download_command(repo: str) -> str:
    """The command that fetches ``repo`` into the cache with the installed huggingface_hub."""
    import huggingface_hub

    major = int(huggingface_hub.__version__.split(".")[0])
    return f"hf download {repo}" if major >= 1 else f"huggingface-cli download {repo}"


@contextlib.contextmanager
def hub_errors(name: str) -> Iterator[None]:
    """Run the body (a timm model build that may fetch from the Hub); its Hub and network failures become
    a :class:`ModelError` naming ``name``, its repo, the cache folder and the fix."""
    from huggingface_hub import errors as hf

    try:
        yield
    except hf.LocalEntryNotFoundError:  # offline (HF_HUB_OFFLINE=1 or no network) and not cached
        repo = hub_repo(name) or name
        raise ModelError(
            f"the files of {name!r} (Hub repo {repo}) are not in the Hugging Face cache {hub_cache_dir()} "
            f"and the Hub cannot be reached ({_why_offline()}); pre-download them where it can "
            f"(`{download_command(repo)}`, with HF_HOME set as here), or pass a local weights file instead "
            "(checkpoint / pretrained PATH)"
        ) from None
    except (hf.RepositoryNotFoundError, hf.RevisionNotFoundError) as err:
        repo = hub_repo(name) or name
        raise ModelError(
            f"Hub repo {repo} of {name!r} was not found or needs a login ({type(err).__name__}); check the name "
            "(timm.list_pretrained('pattern*') lists timm's tags), or log in with `hf auth login` for a private repo"
        ) from None
    except (hf.HfHubHTTPError, hf.OfflineModeIsEnabled, ConnectionError, TimeoutError, URLError) as err:
        raise ModelError(
            f"cannot fetch the weights of {name!r} from the Hugging Face Hub ({_first_line(err, type(err).__name__)}); "
            f"check the network or HF_ENDPOINT, pre-download them (`{download_command(hub_repo(name) or name)}`), "
            "or pass a local weights file"
        ) from None


def _why_offline() -> str:
    from huggingface_hub import constants

    return "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else "no connection"


def _first_line(err: BaseException, default: str) -> str:
    text = (str(err).strip().splitlines() or [""])[0]
    return text[:200] if text else default
