"""Picture files (snapshots, screenshots): the image format follows the file's suffix (``.jpg`` writes JPEG,
``.png`` PNG...); a name without a suffix gets ``.png``; a suffix Qt cannot write is refused, naming the file."""
from __future__ import annotations

from pathlib import Path

from PyQt5.QtGui import QImageWriter

DEFAULT_SUFFIX = ".png"
#: the formats the save dialogs offer first (each kept only where this Qt can write it), by name and suffixes
DIALOG_FORMATS = (("PNG image", ("png",)), ("JPEG image", ("jpg", "jpeg")), ("BMP image", ("bmp",)),
                  ("TIFF image", ("tif", "tiff")), ("WebP image", ("webp",)))


def writable_suffixes() -> list[str]:
    """The suffixes (lower case, without the dot) of the image formats this Qt installation can write."""
    return sorted(bytes(name).decode("ascii").lower() for name in QImageWriter.supportedImageFormats())


def picture_target(path: str | Path, default_suffix: str = DEFAULT_SUFFIX) -> tuple[Path, str]:
    """The file a picture is written to and the image format to write (Qt's name, from the suffix).

    A name without a suffix gets ``default_suffix``; a suffix no installed image writer handles raises
    ``ValueError`` naming the file and the suffixes that work."""
    target = Path(path)
    if not target.suffix:
        target = target.with_name(target.name + default_suffix)
    fmt = target.suffix[1:].lower()
    supported = writable_suffixes()
    if fmt not in supported:
        raise ValueError(f"{target}: cannot write pictures as {target.suffix!r}; use one of "
                         + ", ".join(f".{s}" for s in supported))
    return target, fmt


def dialog_filters() -> list[str]:
    """Name filters for a save dialog: the common writable formats (PNG first), then every writable one."""
    supported = set(writable_suffixes())
    filters = []
    for name, suffixes in DIALOG_FORMATS:
        usable = [s for s in suffixes if s in supported]
        if usable:
            filters.append(f"{name} ({' '.join('*.' + s for s in usable)})")
    filters.append(f"All pictures ({' '.join('*.' + s for s in sorted(supported))})")
    return filters


def filter_suffix(name_filter: str) -> str:
    """The suffix a dialog's chosen filter stands for (``"JPEG image (*.jpg *.jpeg)"`` -> ``".jpg"``); the default
    suffix for a filter of several formats or none."""
    patterns = name_filter.partition("(")[2].rstrip(")").split()
    if name_filter.startswith("All") or not patterns or not patterns[0].startswith("*."):
        return DEFAULT_SUFFIX
    return patterns[0][1:]
