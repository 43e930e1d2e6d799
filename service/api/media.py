"""Media in requests, as llama-server takes them: OpenAI chat content parts (`image_url`; `input_audio`
and `input_video` refused), and /completion's `multimodal_data` (base64 strings).

An image URL may be a `data:image/...;base64,` URI or raw base64. llama-server also downloads http(s)
URLs and reads file:// URLs under --media-path; llamajit does neither yet and answers a 400 saying so.
Every problem with the media is a 400 in llama-server's error shape, never a 500.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

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


def image_bytes(url: str) -> bytes:
    """The bytes of an image_url's url (llama-server's handle_media, less the downloads)."""
    if url.startswith("http"):
        raise bad_request("image URLs are not downloaded by this server: send the image as a data: URI "
                          "(data:image/png;base64,...)")
    if url.startswith("file://"):
        raise bad_request("file:// URLs are not allowed unless --media-path is specified")
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


def take_images(messages: list[dict[str, Any]] | None, media: Media | None) -> tuple[list | None, list[bytes]]:
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
                files.append(image_bytes(url))
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
