"""Pure image and layout helpers of :class:`~mmreid_gs.visualization.
ReIDVisualizer`: reading an image as RGB, fitting it into a cell, the grid
of framed cells with captions that ranked lists and class-graph neighbours
are drawn as (:func:`compose_grid`), and the title of a ranked list. Nothing
here draws text or talks to a backend: the visualizer writes the texts that
:func:`compose_grid` lays out."""
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple, Union

import mmcv
import numpy as np

from mmreid_gs.utils.errors import ReIDUserError

ImageLike = Union[str, np.ndarray]
Color = Tuple[int, int, int]


def load_rgb(image: ImageLike) -> np.ndarray:
    """An image as an RGB uint8 array.

    Args:
        image (str | np.ndarray): A file path, or an HxWx3 RGB (or HxW grey)
            uint8 array.

    Returns:
        np.ndarray: uint8 [H, W, 3] RGB.
    """
    if isinstance(image, str):
        if not osp.isfile(image):
            raise FileNotFoundError(f'image not found: {image}')
        img = mmcv.imread(image, channel_order='rgb')
        if img is None:
            raise ReIDUserError(f'cannot decode image {image}')
        return img
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f'an image must be HxWx3 (RGB) or HxW, got shape '
                         f'{img.shape}')
    return img.astype(np.uint8)


def fit_image(img: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """Resize to (h, w)."""
    h, w = size
    if img.shape[:2] == (h, w):
        return img
    shrink = img.shape[0] > h or img.shape[1] > w
    return mmcv.imresize(img, (w, h),
                         interpolation='area' if shrink else 'bilinear')


class Cell:
    """One framed image of a picture, with an optional caption below."""

    def __init__(self, image: ImageLike, color: Optional[Color] = None,
                 caption: Optional[str] = None,
                 caption_color: Color = (0, 0, 0)) -> None:
        self.image = image
        self.color = color
        self.caption = caption
        self.caption_color = caption_color


def pt_to_px(points: float, dpi: float) -> int:
    """Pixels of ``points`` (1/72 inch) at ``dpi``, rounded up."""
    return int(np.ceil(points * dpi / 72.))


def compose_grid(rows: Sequence[Sequence[Optional[Cell]]],
                 cell_size: Tuple[int, int],
                 frame: int,
                 font_size: int,
                 dpi: float,
                 background: Color,
                 row_titles: Optional[Sequence[str]] = None,
                 breaks: Sequence[int] = (),
                 headers: Optional[Sequence[Tuple[int, str]]] = None,
                 title: Optional[str] = None) -> Tuple[np.ndarray, Dict,
                                                       List[Dict]]:
    """Grid of framed cells: the picture without its texts.

    Args:
        rows: Rows of cells (None leaves a slot empty).
        cell_size: (h, w) of every image.
        frame: Frame thickness in pixels.
        font_size: Caption size in points (titles are 1.2x).
        dpi: Dots per inch of the canvas the texts are drawn on.
        background: Colour of the canvas.
        row_titles: One title line above each row.
        breaks: Column indices before which a wider gap is left.
        headers: ``(column, text)`` written above the first row.
        title: A title line at the top.

    Returns:
        tuple: The RGB uint8 canvas with the framed images; the pixel boxes
        ``{(row, column): (x0, y0, x1, y1)}`` of the cells (frame
        included); the texts to write, as one list each of ``texts``,
        ``positions`` (top-left, or top-centre for captions), ``colors``,
        ``sizes`` (points) and ``aligns`` in a dict.
    """
    ch, cw = cell_size
    f, gap, big_gap, margin = frame, 4, 18, 6
    cap_h = pt_to_px(font_size, dpi) + 5
    line_h = pt_to_px(font_size * 1.2, dpi) + 6
    ncols = max(len(r) for r in rows)
    xs, x = [], margin
    for c in range(ncols):
        if c in breaks:
            x += big_gap - gap
        xs.append(x)
        x += cw + 2 * f + gap
    width = x - gap + margin
    top = margin + (line_h if title else 0) + (line_h if headers else 0)
    row_h = (line_h if row_titles else 0) + ch + 2 * f + cap_h
    height = top + len(rows) * row_h + margin - 2
    canvas = np.empty((height, width, 3), dtype=np.uint8)
    canvas[:] = background
    texts, positions, colors, sizes, aligns = [], [], [], [], []
    boxes = {}

    def text(s, pos, color=(0, 0, 0), size=None, align='left'):
        texts.append(s)
        positions.append(pos)
        colors.append(tuple(int(v) for v in color))
        sizes.append(size or font_size)
        aligns.append(align)

    y = margin
    if title:
        text(title, (margin, y), size=font_size * 1.2)
        y += line_h
    if headers:
        for col, s in headers:
            text(s, (xs[col], y), size=font_size * 1.2)
    for r, row in enumerate(rows):
        y = top + r * row_h
        if row_titles:
            text(row_titles[r], (margin, y), size=font_size * 1.2)
            y += line_h
        for c, cell in enumerate(row):
            if cell is None:
                continue
            x0 = xs[c]
            boxes[(r, c)] = (x0, y, x0 + cw + 2 * f, y + ch + 2 * f)
            if cell.color is not None:
                canvas[y:y + ch + 2 * f, x0:x0 + cw + 2 * f] = cell.color
            canvas[y + f:y + f + ch, x0 + f:x0 + f + cw] = fit_image(
                load_rgb(cell.image), (ch, cw))
            if cell.caption:
                text(cell.caption, (x0 + f + cw / 2, y + ch + 2 * f + 1),
                     color=cell.caption_color, align='center')
    return canvas, boxes, dict(texts=texts, positions=positions,
                               colors=colors, sizes=sizes, aligns=aligns)


def ranked_list_title(query_label: str, ranking: Dict) -> str:
    """Title of a ranked list: the query, its AP and its first-hit rank.

    Args:
        query_label (str): How to name the query (e.g. ``'query 12 (id 7,
            cam 2)'``).
        ranking (dict): Output of
            :func:`~mmreid_gs.visualization.ranking.query_ranking`.

    Returns:
        str: e.g. ``'query 12 (id 7, cam 2): AP 0.63, first hit at rank
        2'``.
    """
    if ranking['first_hit'] is None:
        return f'{query_label}: no valid match in the gallery'
    return (f'{query_label}: AP {ranking["ap"]:.2f}, first hit at rank '
            f'{ranking["first_hit"]}')
