"""The models a router knows, from llama-server's three sources.

1. The cache ($LLAMA_CACHE, else huggingface_hub's): each repository's .gguf files, named
   `user/repo:TAG` where TAG is the file name's last `-` or `.` part, upper-cased (the first shard
   of a split model; projectors and draft sidecars are not models).
2. --models-dir: each .gguf file (named after the file without .gguf) and each subdirectory
   (named after it) holding a model, its shards, a projector (a name with "mmproj") or a draft
   sidecar (a name starting with mtp-, dspark- or dflash-). The directory wins over the cache on
   the same name.
3. --models-preset (service.router.preset): a section named after a known model adds its options
   to it; any other section is a new model, which must name its file (`model`) or repository
   (`hf-repo`).

llamajit cannot read projectors yet (multimodal input is issue 18's): a model's projector is left
out of its command line, and the log says so once per model.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import structlog

from service.router import preset as presets

log = structlog.get_logger("llamajit.router")
_SPLIT = re.compile(r"^(.+)-([0-9]{5})-of-([0-9]{5})$", re.IGNORECASE)
_TAG = re.compile(r"[-.]([A-Z0-9_]+)$", re.IGNORECASE)
_DRAFT_PREFIXES = ("mtp-", "dspark-", "dflash-")


@dataclass
class Entry:
    name: str
    source: str  # "cache", "models_dir" or "preset", as llama-server's /models says
    model_args: list[str]  # the flags naming its file: -m PATH, or -hf REPO from a preset
    options: dict[str, str] = field(default_factory=dict)  # preset options, [*] first then its section's
    mmproj: str | None = None  # found beside it; not passed on (see the module docstring)
    hidden: bool = False  # dedup-cache-models: a preset serves the same file
    files: list[str] = field(default_factory=list)  # cache: its snapshot files (every shard), for DELETE /models

    @property
    def load_on_startup(self) -> bool:
        return presets.truthy(self.options.get("load-on-startup", "false"))

    @property
    def stop_timeout(self) -> float:
        try:
            return float(self.options.get("stop-timeout", 10))
        except ValueError:
            return 10.0


def split_info(file_name: str) -> tuple[str, str, int]:
    """(prefix, TAG, shard index) of a .gguf file name, as llama.cpp reads them."""
    prefix = file_name[:-5] if file_name.lower().endswith(".gguf") else file_name
    index = 1
    m = _SPLIT.match(prefix)
    if m:
        prefix, index = m.group(1), int(m.group(2))
    t = _TAG.search(prefix)
    return prefix, (t.group(1).upper() if t else ""), index


def _is_companion(name: str) -> bool:
    return "mmproj" in name or name.startswith(_DRAFT_PREFIXES)


def cache_dir() -> str | None:
    return os.environ.get("LLAMA_CACHE") or None


def scan_cache() -> dict[str, Entry]:
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        info = scan_cache_dir(cache_dir())
    except (CacheNotFound, OSError):
        return {}
    out: dict[str, Entry] = {}
    for repo in sorted(info.repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model":
            continue
        for rev in sorted(repo.revisions, key=lambda r: r.last_modified, reverse=True):  # newest first
            files = sorted(rev.files, key=lambda f: f.file_name)
            for f in files:
                prefix, tag, index = split_info(f.file_name)
                if not f.file_name.endswith(".gguf") or index != 1 or not tag or _is_companion(prefix):
                    continue
                name = f"{repo.repo_id}:{tag}"
                if name not in out:
                    shards = [str(g.file_path) for g in files if g.file_name.endswith(".gguf")
                              and split_info(g.file_name)[:2] == (prefix, tag)]
                    out[name] = Entry(name, "cache", ["-m", str(f.file_path)], files=shards)
    return out


def remove_cached(entry: Entry) -> bool:
    """Delete a cache model's files: its snapshot links and the blobs no other link uses.
    False when nothing was there to delete."""
    def target(link: str) -> str:  # one level: the snapshot's link to its blob (never what a blob may link to)
        return os.path.normpath(os.path.join(os.path.dirname(link), os.readlink(link))) if os.path.islink(link) else link

    removed = False
    for link in entry.files:
        if not os.path.lexists(link):
            continue
        blob = target(link)
        os.remove(link)
        removed = True
        repo = os.path.dirname(os.path.dirname(os.path.dirname(link)))  # .../models--u--r/snapshots/REV/file
        blobs = os.path.join(repo, "blobs")
        still = any(target(os.path.join(d, f)) == blob for d, _, fs in os.walk(os.path.join(repo, "snapshots"))
                    for f in fs)
        if blob != link and not still and os.path.dirname(blob) == blobs and os.path.lexists(blob):
            os.remove(blob)  # (a blob that is itself a link: the link goes, not what it points at)
    return removed


def _scan_subdir(path: str, name: str) -> Entry | None:
    model = shard = mmproj = None
    for fname in sorted(os.listdir(path)):
        if not fname.endswith(".gguf"):
            continue
        full = os.path.join(path, fname)
        if "mmproj" in fname:
            mmproj = full
        elif fname.startswith(_DRAFT_PREFIXES):
            continue  # a draft model for speculative decoding, which llamajit does not have yet
        elif "-00001-of-" in fname:
            shard = full
        else:
            model = full
    path = shard or model
    return Entry(name, "models_dir", ["-m", path], mmproj=mmproj) if path else None


def scan_models_dir(root: str) -> dict[str, Entry]:
    if not os.path.isdir(root):
        raise presets.PresetError(f"--models-dir {root}: does not exist or is not a directory")
    out: dict[str, Entry] = {}
    for fname in sorted(os.listdir(root)):
        full = os.path.join(root, fname)
        if os.path.isdir(full):
            e = _scan_subdir(full, fname)
            if e is not None:
                out[fname] = e
        elif fname.endswith(".gguf") and not _is_companion(fname):
            name = fname.replace(".gguf", "")
            out[name] = Entry(name, "models_dir", ["-m", full])
    return out


def _cache_names_of(repo_spec: str, cached: dict[str, Entry]) -> set[str]:
    """The cache entries a preset's hf-repo resolves to (without a tag: the one -hf would pick)."""
    from service.hub import _pick

    repo, _, tag = repo_spec.partition(":")
    mine = {n: e for n, e in cached.items() if n.partition(":")[0] == repo}
    if tag:
        return {n for n in mine if n.partition(":")[2] == tag.upper()}
    if not mine:
        return set()
    files = {os.path.basename(e.model_args[1]): n for n, e in mine.items()}
    return {files[_pick(list(files), "")]}


def build(models_dir: str | None, models_preset: str | None) -> dict[str, Entry]:
    """Every model of the three sources; PresetError for a bad --models-dir or preset file."""
    cached = scan_cache()
    out = dict(cached)
    if models_dir:
        out.update(scan_models_dir(models_dir))
    if not models_preset:
        return out
    common, sections = presets.read(models_preset)
    hide: set[str] = set()
    for name, own in sections.items():
        options = {**common, **own}
        entry = out.get(name)
        if entry is None:
            named = [k for k in options if k not in presets.PRESET_ONLY and presets.lookup(k)[0].dest in
                     ("model", "hf_repo", "model_url")]
            if not named:
                raise presets.PresetError(f"--models-preset {models_preset}: [{name}] names no model file "
                                          "(set `model` or `hf-repo`)")
            entry = out[name] = Entry(name, "preset", [])
        entry.source = "preset"
        entry.options = {**entry.options, **options}
        if presets.truthy(options.get("dedup-cache-models", "0")):  # the model's and its draft's repositories
            for k, v in options.items():
                if k not in presets.PRESET_ONLY and presets.lookup(k)[0].dest in ("hf_repo", "spec_draft_hf"):
                    hide |= _cache_names_of(v, cached)
    for name in hide:
        if name in out and out[name].source == "cache":
            out[name].hidden = True
    return out
