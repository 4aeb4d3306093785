"""The Fig. 6 picture: one row per degradation type, columns clean / low / mid / hard, labelled.

The image is first brought to a working size (its long side at most ``work_size`` pixels, as the degradations'
pixel parameters are meant for benchmark-sized images), degraded there, and each result is shrunk to a cell.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

from clear_plugins import degradations

MARGIN = 12
GAP = 4
LABEL_PAD = 10
BACKGROUND = (255, 255, 255)
TEXT = (20, 20, 20)
SUBTEXT = (110, 110, 110)


@dataclass(frozen=True)
class GridLayout:
    """Pixel geometry of the grid: a label column on the left, a header row on top, then the cells."""

    rows: int
    columns: int
    cell_width: int
    cell_height: int
    label_width: int
    header_height: int

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` of the whole picture."""
        width = MARGIN + self.label_width + GAP + self.columns * (self.cell_width + GAP) - GAP + MARGIN
        height = MARGIN + self.header_height + GAP + self.rows * (self.cell_height + GAP) - GAP + MARGIN
        return width, height

    def cell_box(self, row: int, column: int) -> tuple[int, int, int, int]:
        """``(left, top, right, bottom)`` of a cell."""
        left = MARGIN + self.label_width + GAP + column * (self.cell_width + GAP)
        top = MARGIN + self.header_height + GAP + row * (self.cell_height + GAP)
        return left, top, left + self.cell_width, top + self.cell_height


def fit(image: Image.Image, long_side: int) -> Image.Image:
    """``image`` in RGB, shrunk (never enlarged) so its long side is at most ``long_side``."""
    image = image.convert("RGB")
    scale = long_side / max(image.size)
    if scale >= 1:
        return image
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def cell_image(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """``image`` resized to exactly the cell ``size`` (its aspect ratio is already the cell's)."""
    return image.convert("RGB").resize(size, Image.Resampling.LANCZOS)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def _text_size(font, text: str) -> tuple[int, int]:
    left, top, right, bottom = font.getbbox(text)
    return right - left, bottom - top


def column_labels(levels: Sequence[str]) -> list[str]:
    """Header texts: ``clean`` then each level with its intensity (Fig. 6 labels 0.23 / 0.45 / 0.9)."""
    return ["clean", *(f"{level} ({degradations.LEVELS[level]:.2f})" for level in levels)]


def _fonts(cell: int):
    return _font(max(10, cell // 9)), _font(max(8, cell // 12))


def grid_layout(
    image_size: tuple[int, int],
    *,
    cell: int = 160,
    work_size: int = 512,
    types: Sequence[str] | None = None,
    levels: Sequence[str] = ("low", "mid", "hard"),
) -> GridLayout:
    """The geometry :func:`draw_grid` uses for an image of ``image_size`` (cells keep its aspect ratio)."""
    types = list(types) if types is not None else list(degradations.names())
    width, height = image_size
    work_scale = min(1.0, work_size / max(width, height))
    work = (max(1, round(width * work_scale)), max(1, round(height * work_scale)))
    scale = cell / max(work)
    cell_size = (max(1, round(work[0] * scale)), max(1, round(work[1] * scale)))
    title_font, small_font = _fonts(cell)
    category_of = _category_of()
    label_width = 2 * LABEL_PAD + max(
        max(_text_size(title_font, name)[0], _text_size(small_font, category_of.get(name, ""))[0])
        for name in types
    )
    header_height = max(_text_size(title_font, text)[1] for text in column_labels(levels)) + 2 * LABEL_PAD
    return GridLayout(len(types), len(levels) + 1, *cell_size, label_width, header_height)


def _category_of() -> dict[str, str]:
    return {name: category for category, names in degradations.categories().items() for name in names}


def draw_grid(
    image: Image.Image,
    *,
    seed: int = 0,
    cell: int = 160,
    work_size: int = 512,
    types: Sequence[str] | None = None,
    levels: Sequence[str] = ("low", "mid", "hard"),
) -> Image.Image:
    """Draw the Fig. 6 grid of ``image``: rows = ``types`` (default all 16), columns = clean + ``levels``.

    Every degraded cell is ``degradations.apply(work, type, level, seed=seed)`` of the working-size image
    (:func:`fit`), resized to the cell (:func:`cell_image`); the geometry is :func:`grid_layout`'s.
    """
    types = list(types) if types is not None else list(degradations.names())
    layout = grid_layout(image.size, cell=cell, work_size=work_size, types=types, levels=levels)
    work = fit(image, work_size)
    cell_size = (layout.cell_width, layout.cell_height)
    title_font, small_font = _fonts(cell)
    category_of = _category_of()
    canvas = Image.new("RGB", layout.size, BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for column, text in enumerate(column_labels(levels)):
        left, _, right, _ = layout.cell_box(0, column)
        width = _text_size(title_font, text)[0]
        draw.text(((left + right - width) // 2, MARGIN + LABEL_PAD // 2), text, fill=TEXT, font=title_font)
    clean_cell = cell_image(work, cell_size)
    for row, name in enumerate(types):
        left, top, _, bottom = layout.cell_box(row, 0)
        middle = (top + bottom) // 2
        draw.text((MARGIN + LABEL_PAD // 2, middle), name, fill=TEXT, font=title_font, anchor="lb")
        draw.text(
            (MARGIN + LABEL_PAD // 2, middle + 4),
            category_of.get(name, ""),
            fill=SUBTEXT,
            font=small_font,
            anchor="lt",
        )
        canvas.paste(clean_cell, (left, top))
        for column, level in enumerate(levels, start=1):
            degraded = degradations.apply(work, name, level, seed=seed)
            canvas.paste(cell_image(degraded, cell_size), layout.cell_box(row, column)[:2])
    return canvas
