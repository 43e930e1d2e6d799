"""Media in requests, as llama-server takes them: OpenAI chat content parts (`image_url`; `input_audio`
and `input_video` refused), and /completion's `multimodal_data` (base64 strings).

An image URL may be a `data:image/...;base64,` URI, raw base64, an http(s) URL (downloaded as
llama-server does: at most 10 MB, 10 s without data ends it) or, under --media-path, a file:// URL
relative to that directory (each part of the path checked as llama-server checks file names: no
"..", no control or reserved characters). Every problem with the media is a 400 in llama-server's
error shape, never a 500: where llama-server answers a failed download with a 500, this is a 400,
since the URL is the client's.
"""

from __future__ import annotations

import base64
import binascii
import os
from typing import Any

import httpx

from service.api.errors import bad_request
from service.vision.media import Media, media_marker

_NO_MM = "{} input is not supported - hint: if this is unexpected, you may need to provide the mmproj"


def decode_base64(s: str) -> bytes:
    try:
        data = base64.b64decode(s.strip(), validate=False)
    except (binascii.Error, ValueError):
        data = b""
    if not data:
        raise bad_request("Invalid base64 value")
    return data


MAX_DOWNLOAD = 10 * 1024 * 1024  # llama-server's limits for an image URL
DOWNLOAD_TIMEOUT_S = 10.0


def image_bytes(url: str, media_path: str | None = None) -> bytes:
    """The bytes of an image_url's url (llama-server's handle_media). Blocking (a download): the
    caller runs it off the event loop."""
    if url.startswith("http"):
        return download(url)
    if url.startswith("file://"):
        if not media_path:
            raise bad_request("file:// URLs are not allowed unless --media-path is specified")
        return local_file(media_path, url[len("file://"):])
    if url.startswith("data:"):
        head, sep, body = url.partition(",")
        if not sep or "," in body:
            raise bad_request("Invalid uri-encoded base64 value")
        if not head.startswith(("data:image/", "data:video/", "data:audio/")):
            raise bad_request("Invalid uri format: " + head)
        if not head.endswith("base64"):
            raise bad_request("uri must be base64 encoded")
        if not head.startswith("data:image/"):
            raise bad_request(_NO_MM.format("audio" if head.startswith("data:audio/") else "video"))
        return decode_base64(body)
    return decode_base64(url)


def download(url: str) -> bytes:
    """GET url: a 2xx body of at most MAX_DOWNLOAD bytes, else a 400."""
    data = bytearray()
    try:
        with httpx.stream("GET", url, timeout=DOWNLOAD_TIMEOUT_S, follow_redirects=True) as r:
            if not 200 <= r.status_code < 300:
                raise bad_request(f"Failed to download image (HTTP {r.status_code})")
            for chunk in r.iter_bytes():
                data += chunk
                if len(data) > MAX_DOWNLOAD:
                    raise bad_request(f"Failed to download image: larger than {MAX_DOWNLOAD} bytes")
    except httpx.HTTPError as e:  # no connection, a timeout, a bad URL
        raise bad_request(f"Failed to download image: {type(e).__name__}") from None
    return bytes(data)


def local_file(media_path: str, rel: str) -> bytes:
    """The file at media_path/rel, where rel passes llama-server's file name check."""
    if not allowed_path(rel):
        raise bad_request("file path is not allowed: " + rel)
    try:
        with open(os.path.join(media_path, "") + rel, "rb") as f:  # "dir/" + "/a.png" stays in dir
            return f.read()
    except OSError:
        raise bad_request("file does not exist or cannot be opened: " + rel) from None


_RESERVED = set(':*?"<>|\x7f\ufffd\ufeff\uff0e\u2215\u2216')


def allowed_path(rel: str) -> bool:
    """llama-server's fs_validate_filename with subdirectories allowed: 1-255 characters, no
    control, reserved or look-alike characters, no leading or trailing space, no trailing dot,
    no ".." anywhere, not "."."""
    if not 0 < len(rel.encode("utf-8", "surrogatepass")) <= 255 or rel == "." or ".." in rel:
        return False
    if rel[0] == " " or rel[-1] in " .":
        return False
    for ch in rel:
        c = ord(ch)
        if c <= 0x1F or 0x80 <= c <= 0x9F or 0xD800 <= c <= 0xDFFF or ch in _RESERVED:
            return False
    return True


def take_images(messages: list[dict[str, Any]] | None, media: Media | None,
                media_path: str | None = None) -> tuple[list | None, list[bytes]]:
    """(the messages with each image part replaced by a media-marker text part, the images' bytes in order)."""
    if not messages:
        return messages, []
    files: list[bytes] = []
    out = []
    for i, m in enumerate(messages):
        content = m.get("content") if isinstance(m, dict) else None
        if not isinstance(content, list):
            out.append(m)
            continue
        parts = []
        for j, p in enumerate(content):
            kind = p.get("type") if isinstance(p, dict) else None
            if kind == "image_url":
                if media is None:
                    raise bad_request(_NO_MM.format("image"))
                url = p.get("image_url")
                url = url.get("url") if isinstance(url, dict) else None
                if not isinstance(url, str):
                    raise bad_request(f"messages[{i}].content[{j}].image_url.url: expected a string")
                files.append(image_bytes(url, media_path))
                parts.append({"type": "media_marker", "text": media_marker()})
            elif kind in ("input_audio", "input_video", "video_url"):
                raise bad_request(_NO_MM.format("audio" if kind == "input_audio" else "video"))
            else:
                parts.append(p)
        out.append({**m, "content": parts})
    return out, files


def multimodal_data(entries: Any, media: Media | None) -> list[bytes]:
    """The bytes of /completion's prompt.multimodal_data."""
    if media is None:
        raise bad_request("Multimodal data provided, but model does not support multimodal requests.")
    if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
        raise bad_request("multimodal_data: expected an array of base64 strings")
    return [decode_base64(e) for e in entries]
