"""Multimodal prompts: text with media markers plus images -> token ids and image embedding rows, laid out
as llama.cpp's mtmd does:

    gemma3: [BOS] text0 <start_of_image> (n_tokens image rows) <end_of_image> text1 ...
    mlp:    [BOS] text0 (n_tokens image rows) text1 ...

gemma3's rows attend to each other both ways in the text model, mlp's causally (ImageChunk.non_causal).

Each text piece (and each image marker text) is tokenized on its own. An image's rows stand in the token
list as a placeholder id derived from the image's content hash (negative, so never a vocabulary id):
prefix matching in slots and the prompt cache then reuses an image's KV only for the same image, and never
shares a prefix between different ones. The rows themselves travel beside the ids (MediaPrompt.images).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from service.vision.encoder import VisionEncoder
from service.vision.image import ImageError, preprocess
from service.vision.llava import LlavaEncoder, LlavaModel
from service.vision.mmproj import VisionModel

MAX_IMAGES = 64  # per prompt


_MARKER: list[str] = []


def media_marker() -> str:
    """The marker a prompt puts where an image goes (GET /props says it): random per process, so that a
    client's text cannot forge one, unless LLAMA_MEDIA_MARKER pins it (as llama-server)."""
    if not _MARKER:
        _MARKER.append(os.environ.get("LLAMA_MEDIA_MARKER") or f"<__media_{secrets.token_hex(16)}__>")
    return _MARKER[0]


class MediaError(ValueError):
    """A request's media that cannot be used (the message is the client's 400)."""


@dataclass(frozen=True)
class ImageChunk:
    pos: int  # the prompt position of the image's first row
    embd: np.ndarray  # float32 (n_tokens, n_embd): the rows, in place of token embeddings
    non_causal: bool = True  # the rows attend to each other both ways (else causally, as text)


class MediaPrompt(list):
    """Token ids (image rows as placeholder ids < 0) with the image chunks they stand for."""

    images: tuple[ImageChunk, ...] = ()


def placeholder_id(data: bytes) -> int:
    """The negative id an image's rows carry: from the sha256 of its bytes."""
    return -1 - (int.from_bytes(hashlib.sha256(data).digest()[:4], "little") & 0x7FFFFFFF)


class Media:
    """The loaded projector and its encoder (one image at a time: the encoder owns its buffers)."""

    def __init__(self, model: VisionModel | LlavaModel, tokenize: Callable[[str], list[int]], bos: int | None):
        self.model = model
        self.encoder = LlavaEncoder(model) if isinstance(model, LlavaModel) else VisionEncoder(model)
        self._lock = threading.Lock()
        self._tokenize = tokenize  # text -> ids, no BOS, special tokens parsed
        self._bos = bos
        self.begin: list[int] = []
        self.end: list[int] = []
        if model.markers:
            self.begin, self.end = tokenize(model.markers[0]), tokenize(model.markers[1])
            if len(self.begin) != 1 or len(self.end) != 1:
                raise MediaError(f"the text model's vocabulary has no {model.markers[0]}/{model.markers[1]} tokens: "
                                 f"this {model.projector} projector belongs to another model")

    @property
    def n_tokens(self) -> int:
        return self.model.n_tokens

    def embed(self, data: bytes) -> np.ndarray:
        """float32 (n_tokens, n_embd) rows of one encoded image; MediaError for a bad image."""
        try:
            m = self.model
            img = preprocess(data, m.image_size, m.mean, m.std, m.resample, m.pad_color)
        except ImageError as e:
            raise MediaError(f"Failed to load image or audio file: {e}") from None
        with self._lock:
            return self.encoder.encode(img)

    def prompt(self, text: str, images: list[bytes], add_bos: bool = True) -> MediaPrompt:
        """The ids and image chunks of `text`, whose media markers take `images` in order."""
        marker = media_marker()
        parts = text.split(marker)
        if len(parts) - 1 != len(images):
            raise MediaError(f"Failed to tokenize prompt: {len(parts) - 1} media markers ({marker}) "
                             f"for {len(images)} images")
        if len(images) > MAX_IMAGES:
            raise MediaError(f"too many images in one prompt: {len(images)} (at most {MAX_IMAGES})")
        ids: list[int] = [self._bos] if add_bos and self._bos is not None else []
        chunks = []
        for i, part in enumerate(parts):
            if part:
                ids += self._tokenize(part)
            if i < len(images):
                rows = self.embed(images[i])
                ids += self.begin
                chunks.append(ImageChunk(len(ids), rows, self.model.non_causal))
                ids += [placeholder_id(images[i])] * len(rows)
                ids += self.end
        out = MediaPrompt(ids)
        out.images = tuple(chunks)
        return out
