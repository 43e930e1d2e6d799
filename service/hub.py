"""-hf/--hf-repo: the model file from a Hugging Face repository, through huggingface_hub.

`user/repo[:quant]` picks the repository's .gguf whose name holds the quant tag (default
Q4_K_M, then the first .gguf), as llama-server does; --hf-file names the file outright.
Downloads go to $LLAMA_CACHE when set, else huggingface_hub's own cache ($HF_HOME). With
--offline (or HF_HUB_OFFLINE=1) only what is already in the cache is used and the Hub is never
contacted; a model that is not cached is an error saying so. --hf-token (else HF_TOKEN)
authenticates downloads of gated or private repositories.

The repository's multimodal projector comes with the model unless --no-mmproj or --mmproj says
otherwise, picked as llama-server picks it: a .gguf with "mmproj" in its name, in the model's
directory or one above it (the deepest wins), then the one whose quantization bits (the number
in the name's last tag: F16 -> 16, Q8_0 -> 8) are closest to the model's, the first on a tie.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

DEFAULT_QUANT = "Q4_K_M"


class HubError(ValueError):
    pass


def _cache_dir() -> str | None:
    return os.environ.get("LLAMA_CACHE") or None


def _pick(files: list[str], quant: str) -> str:
    ggufs = sorted(f for f in files if f.endswith(".gguf") and "mmproj" not in f.lower())
    if not ggufs:
        raise HubError("the repository has no .gguf file")
    for tag in ([quant] if quant else [DEFAULT_QUANT]):
        hits = [f for f in ggufs if tag.lower() in Path(f).name.lower()]
        if hits:
            return hits[0]
    if quant:
        raise HubError(f"no .gguf file matching {quant!r} (files: {', '.join(ggufs)})")
    return ggufs[0]


def quant_bits(name: str) -> int:
    """The number in a .gguf name's last -/. tag, split suffix left out ("x-Q4_K_M.gguf" -> 4; 0: none)."""
    stem = re.sub(r"-\d{5}-of-\d{5}$", "", name.removesuffix(".gguf"), flags=re.IGNORECASE)
    tag = re.search(r"[-.]([A-Za-z0-9_]+)$", stem)
    digits = re.search(r"\d+", tag.group(1)) if tag else None
    return int(digits.group()) if digits else 0


def pick_mmproj(files: list[str], model: str) -> str | None:
    """The projector llama-server downloads beside `model` (see the module's docstring), or None."""
    model_dir = model.split("/")[:-1]
    best, best_key = None, None
    for f in files:
        if not f.endswith(".gguf") or "mmproj" not in f:
            continue
        sib_dir = f.split("/")[:-1]
        if model_dir[:len(sib_dir)] != sib_dir:  # only the model's directory and those above it
            continue
        key = (-len(sib_dir), abs(quant_bits(f) - quant_bits(model)))
        if best_key is None or key < best_key:
            best, best_key = f, key
    return best


def resolve_model(repo_spec: str, file: str | None = None, *, token: str | None = None,
                  offline: bool = False, mmproj: bool = False) -> tuple[str, str | None]:
    """Local paths of the model file and (with mmproj) of its projector when the repository has
    one, downloaded if needed (offline: from the cache only)."""
    if offline:  # read by huggingface_hub when first imported; local_files_only below covers a later call
        os.environ["HF_HUB_OFFLINE"] = "1"
    from huggingface_hub import HfApi, hf_hub_download, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    repo, _, quant = repo_spec.partition(":")
    if repo.count("/") != 1:
        raise HubError(f"--hf-repo: expected <user>/<model>[:quant], got {repo_spec!r}")
    cache = _cache_dir()
    try:
        files: list[str] = []
        if file is None or mmproj:
            try:
                if offline:
                    raise LocalEntryNotFoundError("offline")
                files = HfApi().list_repo_files(repo, token=token)
            except (HfHubHTTPError, OSError, LocalEntryNotFoundError):
                try:
                    snap = Path(snapshot_download(repo, cache_dir=cache, local_files_only=True))
                except LocalEntryNotFoundError:
                    if file is None:
                        raise
                else:
                    files = [str(p.relative_to(snap)) for p in snap.rglob("*.gguf")]
        if file is None:
            file = _pick(files, quant)
        path = hf_hub_download(repo, file, cache_dir=cache, token=token, local_files_only=offline)
        proj = pick_mmproj(files, file) if mmproj else None
        if proj is not None:
            proj = hf_hub_download(repo, proj, cache_dir=cache, token=token, local_files_only=offline)
        return path, proj
    except HubError:
        raise
    except LocalEntryNotFoundError as e:
        if offline:
            where = cache or "huggingface_hub's cache ($HF_HOME)"
            raise HubError(f"--hf-repo {repo_spec}: --offline, and the model is not in the local cache ({where}); "
                           "run once without --offline to download it") from None
        raise HubError(f"--hf-repo {repo_spec}: {type(e).__name__}: {e}") from None
    except Exception as e:  # network, missing repo or file
        raise HubError(f"--hf-repo {repo_spec}: {type(e).__name__}: {e}") from None
