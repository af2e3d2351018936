"""`thorgen models pull NAME`: download a model's diffusers folder on purpose, with resume.

The only place thorgen talks to a model hub, and only when the user runs this command. Files land in
``models/NAME`` (huggingface_hub's ``local_dir``; an interrupted pull continues where it stopped).
A gated repository needs its licence accepted on the Hub and a token in ``HF_TOKEN``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from thorgen.models.catalog import DIFFUSERS_FILES

if TYPE_CHECKING:
    from thorgen.config import Config


class PullError(Exception):
    pass


def pull(config: Config, name: str, allow_patterns: list[str] | None = None) -> Path:
    """Download [models.NAME]'s source into its folder: only ``allow_patterns`` (its catalog entry's;
    the diffusers layout by default). thorgen.families.pull finds the patterns and other downloads."""
    if name not in config.models:
        raise PullError(f"no model named {name!r}; `thorgen models list` shows the names")
    model = config.models[name]
    if not model.source:
        raise PullError(f"models.{name}.source is empty: thorgen does not know where to get it")
    target = config.models_root / model.path
    target.mkdir(parents=True, exist_ok=True)

    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        for repo_id in model.source.split():  # several repos (space-separated) share one folder
            huggingface_hub.snapshot_download(
                repo_id=repo_id,
                revision=model.revision or None,
                local_dir=target,
                allow_patterns=allow_patterns or DIFFUSERS_FILES,
            )
    except GatedRepoError:
        raise PullError(_gated_message(model.source)) from None
    except RepositoryNotFoundError:
        raise PullError(f"{model.source} was not found on the Hugging Face Hub (or it is private and "
                        + ("HF_TOKEN cannot see it)" if _has_token() else "HF_TOKEN is not set)")) from None
    except LocalEntryNotFoundError:
        raise PullError(f"cannot reach the Hugging Face Hub to download {model.source} (offline, or "
                        "HF_HUB_OFFLINE=1 is set); run the pull where the Hub is reachable") from None
    except HfHubHTTPError as exc:
        if exc.response is not None and exc.response.status_code in (401, 403):
            raise PullError(_gated_message(model.source)) from None
        raise PullError(f"downloading {model.source} failed: {exc}") from None
    return target


def _has_token() -> bool:
    import os

    return bool(os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN"))


def _gated_message(repo: str) -> str:
    first = ("HF_TOKEN is set but that account has not been granted access" if _has_token()
             else "HF_TOKEN is not set")
    return (f"{repo} is a gated model and {first}. Open https://huggingface.co/{repo} while signed in, "
            "accept its licence, create a read token at https://huggingface.co/settings/tokens, then run "
            f"`HF_TOKEN=hf_... thorgen models pull ...` again (thorgen never stores the token).")
