"""A small HTML report with quicklooks of what an ARD run produced."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image
from rasterio.enums import Resampling

from musyq.io.output import CLEAR, CLOUD, CLOUD_SHADOW, SNOW, WATER

QUICKLOOK_PIXELS = 360
RGB_NAMES = ("red", "green", "blue")
QUALITY_COLOURS = {CLEAR: (90, 170, 80), WATER: (40, 120, 230), CLOUD_SHADOW: (70, 60, 110), SNOW: (230, 120, 230),
                   CLOUD: (245, 245, 245)}
LEGEND = " ".join(f"<span style='background:rgb{c};padding:0 6px'>&nbsp;</span> {n}" for n, c in
                  (("clear", QUALITY_COLOURS[CLEAR]), ("water", QUALITY_COLOURS[WATER]),
                   ("shadow", QUALITY_COLOURS[CLOUD_SHADOW]), ("snow", QUALITY_COLOURS[SNOW]),
                   ("cloud", QUALITY_COLOURS[CLOUD])))


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image, "RGBA").save(buffer, format="PNG")
    return buffer.getvalue()


def _quicklook_shape(dataset: rasterio.DatasetReader) -> tuple[int, int]:
    scale = QUICKLOOK_PIXELS / max(dataset.width, dataset.height)
    return max(1, int(dataset.height * scale)), max(1, int(dataset.width * scale))


def quicklook_png(reflectance_path: Path) -> bytes:
    """True-colour PNG of a reflectance layer, stretched between the 2nd and 98th percentiles of the data."""
    with rasterio.open(reflectance_path) as dataset:
        names = list(dataset.descriptions)
        indexes = [names.index(n) + 1 for n in RGB_NAMES if n in names] or [1, 1, 1]
        indexes = (indexes * 3)[:3]
        shape = _quicklook_shape(dataset)
        rgb = dataset.read(indexes, out_shape=(3, *shape), resampling=Resampling.average).astype(np.float32)
    valid = rgb.min(axis=0) > 0
    image = np.zeros((*shape, 4), dtype=np.uint8)
    if valid.any():
        low, high = np.percentile(rgb[:, valid], [2, 98])
        stretched = np.clip((rgb - low) / max(high - low, 1.0), 0, 1) ** 0.8
        image[..., :3] = (np.moveaxis(stretched, 0, -1) * 255).astype(np.uint8)
    image[..., 3] = np.where(valid, 255, 0)
    return _png(image)


def mask_png(mask_path: Path) -> bytes:
    """The quality codes in colour, fill transparent."""
    with rasterio.open(mask_path) as dataset:
        codes = dataset.read(1, out_shape=_quicklook_shape(dataset), resampling=Resampling.nearest)
    image = np.zeros((*codes.shape, 4), dtype=np.uint8)
    for code, colour in QUALITY_COLOURS.items():
        image[codes == code] = (*colour, 255)
    return _png(image)


def write_report(out_dir: Path, item_paths: list[Path]) -> Path:
    """One card per STAC item: quicklook, sensor, tile, date, data coverage and the layer files."""
    out_dir = out_dir.resolve()
    cards = []
    for item_path in sorted(item_paths):
        item = json.loads(item_path.read_text())
        assets = item["assets"]
        reflectance = item_path.parent / assets["SR" if "SR" in assets else "TOA"]["href"]
        png = base64.b64encode(quicklook_png(reflectance)).decode()
        mask = base64.b64encode(mask_png(item_path.parent / assets["MASK"]["href"])).decode()
        props = item["properties"]
        quality = (f"<p>cloud {props['eo:cloud_cover']:.1f}% · shadow {props['musyq:cloud_shadow_percent']:.1f}% · "
                   f"water {props['musyq:water_percent']:.1f}% · snow {props['musyq:snow_percent']:.1f}%</p>"
                   if "eo:cloud_cover" in props else "")
        atmosphere = (f" · AOD {props['musyq:aot550']:.2f} ({html.escape(props['musyq:aot550_source'])}), vapour "
                      f"{props['musyq:water_vapour']:.2f} g/cm²" if "musyq:aot550" in props else "")
        files = "".join(f"<li>{html.escape(k)}: <code>{html.escape(str((item_path.parent / a['href']).relative_to(out_dir)))}</code></li>"
                        for k, a in assets.items())
        cards.append(
            f"<div class='card'><img src='data:image/png;base64,{png}' alt='quicklook'>"
            f"<img src='data:image/png;base64,{mask}' alt='quality'>{quality}"
            f"<h3>{html.escape(item['id'])}</h3><p>{html.escape(props['platform'])} · tile {html.escape(props['mgrs:tile'])} · "
            f"{html.escape(props['datetime'])} · {100 - props['musyq:fill_percent']:.1f}% data · sun elevation "
            f"{props.get('view:sun_elevation', float('nan')):.1f}°{atmosphere}</p><ul>{files}</ul></div>"
        )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>musyq demo</title><style>"
        "body{font-family:sans-serif;margin:2em;background:#f6f6f4}.card{display:inline-block;vertical-align:top;"
        "width:380px;margin:8px;padding:10px;background:white;border-radius:6px;box-shadow:0 1px 3px #0002}"
        "img{width:360px;background:repeating-conic-gradient(#ddd 0 25%,#fff 0 50%) 0 0/16px 16px}"
        "h3{font-size:13px;word-break:break-all}p,li{font-size:12px}</style></head><body>"
        f"<h1>musyq ARD</h1><p>{len(cards)} tile(s); STAC collection: <code>collection.json</code></p>"
        f"<p>Quality layer: {LEGEND}</p>"
        + "".join(cards) + "</body></html>"
    )
    report = out_dir / "report.html"
    report.write_text(page)
    return report
