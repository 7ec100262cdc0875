"""``index.html`` of a batch job: one self-contained page (pictures inlined, no network) to look through.

Per item: the photo with the crop box, the reconstruction over the full photo, the predicted
normals, a turntable strip of the mesh (rendered by nphmkit), and the item's figures; then the
failures. Read from the item folders and ``summary.json`` that :mod:`nphmkit.pipeline.batch` wrote.
"""

from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path

import torch

from nphmkit._io import write_text
from nphmkit.data.image_io import encode_png, read_image
from nphmkit.pipeline.views import thumbnail

STYLE = """body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1400px}
h1{font-size:1.4em}.note{background:#fff4d6;border:1px solid #e0c36a;padding:.6em 1em;border-radius:6px}
.item{border-top:1px solid #ccc;padding:.8em 0}.pics{display:flex;gap:.6em;flex-wrap:wrap;align-items:flex-start}
figure{margin:0}figcaption{font-size:.8em;color:#555}img{border:1px solid #ddd;image-rendering:auto}
table{border-collapse:collapse;font-size:.85em}td,th{border:1px solid #ddd;padding:.2em .5em;text-align:left}
.fail{color:#a00}"""


def _img(path: Path, longest: int = 256, caption: str = "") -> str:
    if not path.is_file():
        return ""
    picture = thumbnail(read_image(path), longest)
    data = base64.b64encode(encode_png(picture)).decode("ascii")
    return (f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _boxed(photo_path: Path, box, longest: int = 256) -> str:
    """The photo thumbnail with the crop box drawn in."""
    if not photo_path.is_file():
        return ""
    try:
        from nphmkit.preprocess.images import load_photo

        photo = load_photo(photo_path)
        image = torch.from_numpy(photo.image.copy()).float() / 255
        box = [float(v) * photo.factor for v in box]
    except ValueError:
        return ""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    t = max(1, round(max(h, w) / 200))
    red = torch.tensor([0.9, 0.1, 0.1])
    for (a, b, c, d) in ((y0, y0 + t, x0, x1), (y1 - t, y1, x0, x1), (y0, y1, x0, x0 + t), (y0, y1, x1 - t, x1)):
        image[max(0, a) : max(0, min(h, b)), max(0, c) : max(0, min(w, d))] = red
    picture = thumbnail(image, longest)
    data = base64.b64encode(encode_png(picture)).decode("ascii")
    return f'<figure><img alt="photo" src="data:image/png;base64,{data}"><figcaption>photo and crop box</figcaption></figure>'


def write_index(out: str | os.PathLike, summary: dict, failures: list[dict], title: str = "nphmkit reconstruct") -> Path:
    """Write ``out/index.html`` for a finished batch (``summary`` as in ``summary.json``)."""
    out = Path(out)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"]
    notice = summary.get("notice")
    if notice:
        parts.append(f"<p class='note'>{html.escape(notice)}</p>")
    weights = summary.get("weights", {})
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v.get('path', '')))}</td>"
                   f"<td><code>{html.escape(str(v.get('sha256', ''))[:16])}</code></td></tr>"
                   for k, v in weights.items() if isinstance(v, dict))
    parts.append(f"<p>{summary.get('finished', 0)} finished, {summary.get('failed', 0)} failed; path: "
                 f"{html.escape(str(summary.get('path', '')))}; nphmkit {html.escape(str(summary.get('nphmkit', '')))}</p>")
    if rows:
        parts.append(f"<table><tr><th>weights</th><th>folder</th><th>sha256</th></tr>{rows}</table>")
    for item in summary.get("items", []):
        folder = out / item["name"]
        crop = json.loads((folder / "crop.json").read_text()) if (folder / "crop.json").is_file() else {}
        figures = {k: v for k, v in item.items() if k not in ("name", "input", "landmarks_px") and not isinstance(v, dict)}
        table = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(_fmt(v))}</td></tr>" for k, v in figures.items())
        parts.append(f"<div class='item'><h2>{html.escape(item['name'])}</h2><div class='pics'>"
                     + _boxed(Path(item["input"]), crop.get("box", [0, 0, 1, 1]))
                     + _img(folder / "overlay.png", 256, "reconstruction over the photo")
                     + _img(folder / "normals.png", 160, "predicted normals (crop)")
                     + _img(folder / "turntable.png", 480, "mesh, turntable")
                     + f"<table>{table}</table></div></div>")
    if failures:
        items = "".join(f"<li><b>{html.escape(f['input'])}</b>: {html.escape(f['error'])}</li>" for f in failures)
        parts.append(f"<h2 class='fail'>Failed ({len(failures)})</h2><ul class='fail'>{items}</ul>")
    parts.append("</body></html>\n")
    path = out / "index.html"
    write_text(path, "".join(parts))
    return path


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)
