"""Landsat metadata (MTL) and angle (ANG) files in their three encodings: ODL text, XML and JSON.

All three come out as the same nested dictionary of groups, with numbers converted and
parenthesised lists turned into tuples.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from musyq.core.errors import InputError

Group = dict[str, Any]

_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def _value(text: str) -> Any:
    text = text.strip()
    if text.startswith('"') and text.endswith('"'):
        return text[1:-1]
    if text.startswith("(") and text.endswith(")"):
        return tuple(_value(v) for v in text[1:-1].split(",") if v.strip())
    if _NUMBER.match(text):
        return float(text) if any(c in text for c in ".eE") else int(text)
    return text


def parse_odl(text: str, source: str | Path = "<text>") -> Group:
    """Parse ``GROUP = X ... END_GROUP = X`` text; multi-line parenthesised values are joined."""
    root: Group = {}
    stack: list[Group] = [root]
    pending: tuple[str, str] | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if pending is not None:
            key, partial = pending
            partial += " " + line
            if partial.count("(") == partial.count(")"):
                stack[-1][key] = _value(partial)
                pending = None
            else:
                pending = (key, partial)
            continue
        if line == "END":
            break
        if "=" not in line:
            raise InputError(source, f"line {number} is not 'KEY = value': {line[:60]!r}")
        key, _, value = (part.strip() for part in line.partition("="))
        if key == "GROUP":
            group: Group = {}
            stack[-1][value] = group
            stack.append(group)
        elif key == "END_GROUP":
            if len(stack) == 1:
                raise InputError(source, f"line {number} closes group {value} that was never opened")
            stack.pop()
        elif value.startswith("(") and value.count("(") != value.count(")"):
            pending = (key, value)
        else:
            stack[-1][key] = _value(value)
    if len(stack) != 1 or pending is not None:
        raise InputError(source, "file ends inside an open group or value (truncated?)")
    return root


def _xml_group(element: ET.Element) -> Group | Any:
    children = list(element)
    if not children:
        return _value(element.text or "")
    return {child.tag: _xml_group(child) for child in children}


def _normalise(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _normalise(v) for k, v in node.items()}
    if isinstance(node, str):
        return _value(node)
    return node


def read_metadata_file(path: str | Path) -> Group:
    """Read an MTL/ANG file in ODL text, XML or JSON into nested groups."""
    path = Path(path)
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise InputError(path, f"cannot read metadata file ({exc.strerror})") from exc
    stripped = text.lstrip()
    try:
        if stripped.startswith("<"):
            root = ET.fromstring(text)
            return {root.tag: _xml_group(root)}
        if stripped.startswith("{"):
            return dict(_normalise(json.loads(text)))
    except (ET.ParseError, json.JSONDecodeError) as exc:
        raise InputError(path, f"malformed metadata ({exc})") from exc
    return parse_odl(text, path)


def find_value(groups: Group, key: str, prefer: str = "") -> Any:
    """First value named ``key`` anywhere in the groups, looking first in groups whose name contains ``prefer``."""
    found: list[tuple[bool, Any]] = []

    def walk(node: Group, name: str) -> None:
        for k, v in node.items():
            if isinstance(v, dict):
                walk(v, k)
            elif k == key:
                found.append((bool(prefer) and prefer in name, v))

    walk(groups, "")
    if not found:
        return None
    found.sort(key=lambda item: not item[0])
    return found[0][1]
