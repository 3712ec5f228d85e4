"""KVV's image fixtures for the prompt-token cases: a request's ``image_url`` part may name
``fixture://NAME.png?width=W&height=H``; before the request is sent the PNG ``NAME.png`` of
the cases' ``images/`` folder is resized to W×H with nearest-neighbour sampling, encoded as
PNG and put in as a ``data:image/png;base64,...`` URL (KVV's
``_image_fixture_data_url``). The expected counts were taken from exactly those bytes.
Needs Pillow (only when a case names a fixture)."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

MAX_IMAGE_DIMENSION = 4096


def materialize(value: Any, images: Path) -> Any:
    """A copy of ``value`` with every ``fixture://`` image URL replaced by its data URL.
    Raises ``ValueError`` for a malformed fixture URL or a missing image."""
    if isinstance(value, list):
        return [materialize(item, images) for item in value]
    if not isinstance(value, dict):
        return value
    out = {key: materialize(item, images) for key, item in value.items()}
    part = out.get("image_url")
    if out.get("type") == "image_url" and isinstance(part, dict):
        url = part.get("url")
        if isinstance(url, str) and url.startswith("fixture://"):
            out["image_url"] = {**part, "url": fixture_data_url(url, images)}
    return out


def fixture_data_url(url: str, images: Path) -> str:
    """The PNG data URL of ``fixture://NAME?width=W&height=H`` (W and H in 1..4096)."""
    parsed = urlsplit(url)
    if parsed.scheme != "fixture" or not parsed.netloc or parsed.path or parsed.fragment:
        raise ValueError(f"invalid image fixture URL: {url!r}")
    query = parse_qs(parsed.query, keep_blank_values=True)
    if set(query) != {"width", "height"}:
        raise ValueError(f"image fixture URL needs width and height only: {url!r}")
    width, height = (_dimension(query[name], name) for name in ("width", "height"))
    root = images.resolve()
    path = (root / unquote(parsed.netloc)).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise ValueError(f"image fixture not found: {parsed.netloc!r} in {images}")
    try:
        from PIL import Image
    except ImportError:
        raise ValueError("image prompt-token cases need Pillow: pip install pillow") from None
    with Image.open(path) as source:
        if source.format != "PNG":
            raise ValueError(f"image fixture must be a PNG: {parsed.netloc!r}")
        image = source.convert("RGB").resize((width, height),
                                             resample=Image.Resampling.NEAREST)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _dimension(values: list[str], name: str) -> int:
    if len(values) != 1 or not values[0].isdigit() or not (
            1 <= int(values[0]) <= MAX_IMAGE_DIMENSION):
        raise ValueError(f"image fixture {name} must be one integer in 1..{MAX_IMAGE_DIMENSION}")
    return int(values[0])
