"""MMEngine visualizer that draws what re-ID results and the Graph Sampler
look like: ranked lists, class-graph neighbours and QAConv
correspondences. The image and layout helpers it draws with are in
:mod:`~mmreid_gs.visualization.drawing`."""
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import mmcv
import numpy as np
import torch
from mmengine.visualization import Visualizer

from mmreid_gs.registry import VISUALIZERS
from mmreid_gs.utils.arrays import to_numpy
from mmreid_gs.utils.errors import ReIDUserError
from .drawing import (Cell, Color, ImageLike, compose_grid, fit_image,
                      load_rgb, pt_to_px)
from .ranking import IGNORED, MATCH, NON_MATCH


@VISUALIZERS.register_module()
class ReIDVisualizer(Visualizer):
    """Pictures of person re-identification results.

    Every ``add_*`` method draws a picture, sends it to the visualizer's
    backends with ``add_image`` (``LocalVisBackend`` writes PNGs under
    ``save_dir/vis_data/vis_image/``, ``TensorboardVisBackend`` sends them
    to TensorBoard, ``WandbVisBackend`` to WandB) and can also write it to
    ``out_file``; the ``draw_*`` methods only return the picture (RGB
    uint8). Frames are painted into the pixels (exact colours); text goes
    through MMEngine's matplotlib canvas.

    After each drawing, :attr:`last_layout` holds the pixel boxes
    ``(x0, y0, x1, y1)`` (frame included) of the picture's images:
    ``cells[(row, column)]`` for grids (column 0 = the query / centre
    class), ``query`` and ``gallery`` for correspondences.

    Colours (RGB): a gallery item of the query's identity is framed in
    :attr:`MATCH_COLOR` (green), another identity in
    :attr:`NON_MATCH_COLOR` (red), an item the Market-1501 protocol ignores
    (same identity and camera as the query) in :attr:`IGNORED_COLOR`
    (grey); queries and centre classes in :attr:`QUERY_COLOR` (blue).

    In a config::

        visualizer = dict(type='ReIDVisualizer',
                          vis_backends=[dict(type='LocalVisBackend'),
                                        dict(type='TensorboardVisBackend')])

    Args:
        name (str): Instance name. Defaults to 'visualizer'.
        image (np.ndarray, optional): Initial image. Defaults to None.
        vis_backends (list[dict], optional): Backends. Defaults to None.
        save_dir (str, optional): Folder of the backends' files.
        cell_size (tuple[int, int]): (h, w) of every image in ranked lists
            and neighbour grids. Defaults to (128, 64).
        frame (int): Frame thickness in pixels. Defaults to 4.
        font_size (int): Caption size in points (titles are 1.2x).
            Defaults to 8.
        **kwargs: Other arguments of :class:`mmengine.visualization.
            Visualizer` (``fig_save_cfg``, ``fig_show_cfg``).
    """

    MATCH_COLOR: Color = (0, 176, 0)
    NON_MATCH_COLOR: Color = (224, 0, 0)
    IGNORED_COLOR: Color = (150, 150, 150)
    QUERY_COLOR: Color = (0, 80, 255)
    NEUTRAL_COLOR: Color = (215, 215, 215)
    BACKGROUND: Color = (255, 255, 255)

    def __init__(self,
                 name: str = 'visualizer',
                 image: Optional[np.ndarray] = None,
                 vis_backends: Optional[List[dict]] = None,
                 save_dir: Optional[str] = None,
                 cell_size: Tuple[int, int] = (128, 64),
                 frame: int = 4,
                 font_size: int = 8,
                 **kwargs) -> None:
        super().__init__(name=name, image=image, vis_backends=vis_backends,
                         save_dir=save_dir, **kwargs)
        if len(cell_size) != 2 or min(cell_size) < 8:
            raise ReIDUserError(
                'ReIDVisualizer: cell_size must be (h, w) of at least 8 '
                f'pixels each, got {cell_size}')
        self.cell_size = (int(cell_size[0]), int(cell_size[1]))
        self.frame = int(frame)
        self.font_size = int(font_size)
        # Boxes of the last picture (see `last_layout`).
        self.last_layout: Dict = {}

    @classmethod
    def drawer_for(cls, visualizer: Optional[Visualizer]) -> 'ReIDVisualizer':
        """A :class:`ReIDVisualizer` to draw with: ``visualizer`` itself if
        it is one, else a shared instance without backends (send its
        pictures with ``visualizer.add_image``). Lets hooks draw whatever
        visualizer a config builds.

        Args:
            visualizer (Visualizer, optional): E.g. ``runner.visualizer``.

        Returns:
            ReIDVisualizer: The drawer.
        """
        if isinstance(visualizer, cls):
            return visualizer
        return cls.get_instance('mmreid_gs_drawer')

    # ----------------------------------------------------------- geometry
    def _pt_to_px(self, points: float) -> int:
        return pt_to_px(points, self.dpi)

    def _compose(self,
                 rows: Sequence[Sequence[Optional[Cell]]],
                 row_titles: Optional[Sequence[str]] = None,
                 breaks: Sequence[int] = (),
                 headers: Optional[Sequence[Tuple[int, str]]] = None,
                 title: Optional[str] = None) -> np.ndarray:
        """Grid of framed cells (:func:`~.drawing.compose_grid`) with its
        texts; sets :attr:`last_layout`.

        Returns:
            np.ndarray: RGB uint8 picture.
        """
        canvas, boxes, texts = compose_grid(
            rows, self.cell_size, self.frame, self.font_size, self.dpi,
            self.BACKGROUND, row_titles=row_titles, breaks=breaks,
            headers=headers, title=title)
        self.last_layout = dict(cells=boxes)
        self.set_image(canvas)
        if texts['texts']:
            self.draw_texts(
                texts['texts'], np.array(texts['positions'],
                                         dtype=np.float64),
                font_sizes=texts['sizes'], colors=texts['colors'],
                vertical_alignments='top',
                horizontal_alignments=texts['aligns'])
        return self.get_image()

    def _emit(self, name: str, image: np.ndarray, step: int,
              out_file: Optional[str]) -> np.ndarray:
        self.add_image(name, image, step=step)
        if out_file is not None:
            params = None
            if out_file.lower().endswith('.png'):
                params = [cv2.IMWRITE_PNG_COMPRESSION, 9]
            mmcv.imwrite(image[..., ::-1], out_file, params=params)
        return image

    # -------------------------------------------------------- ranked lists
    def _kind_color(self, kind: str) -> Color:
        colors = {
            MATCH: self.MATCH_COLOR,
            NON_MATCH: self.NON_MATCH_COLOR,
            IGNORED: self.IGNORED_COLOR
        }
        if kind not in colors:
            raise ValueError(f'unknown ranked-list item kind {kind!r}; '
                             f'expected one of {sorted(colors)}')
        return colors[kind]

    def draw_ranked_lists(self, rows: Sequence[Dict]) -> np.ndarray:
        """Ranked lists, one row per query.

        Args:
            rows (Sequence[dict]): One dict per query with ``query`` (image
                path or RGB array), ``gallery`` (its top-k gallery images, in
                rank order), ``scores`` ([k] floats, written under each
                image), ``kinds`` ([k] ``'match'`` / ``'non-match'`` /
                ``'ignored'``) and an optional ``title`` (e.g. from
                :func:`ranked_list_title`).

        Returns:
            np.ndarray: RGB uint8 [H, W, 3]; W grows with k, H with the
            number of rows.
        """
        if not rows:
            raise ValueError('draw_ranked_lists: no query to draw')
        cells, titles = [], []
        for i, row in enumerate(rows):
            gallery = list(row['gallery'])
            scores = np.asarray(row['scores'], dtype=np.float64).reshape(-1)
            kinds = list(row['kinds'])
            if not (len(gallery) == scores.size == len(kinds)):
                raise ValueError(
                    f'ranked list {i}: gallery ({len(gallery)}), scores '
                    f'({scores.size}) and kinds ({len(kinds)}) differ in '
                    'length')
            line = [Cell(row['query'], self.QUERY_COLOR, 'query')]
            for img, s, kind in zip(gallery, scores, kinds):
                color = self._kind_color(kind)
                line.append(Cell(img, color, f'{s:.2f}', color))
            cells.append(line)
            titles.append(str(row.get('title') or ''))
        return self._compose(
            cells, row_titles=titles if any(titles) else None, breaks=(1, ))

    def add_ranked_lists(self,
                         name: str,
                         rows: Sequence[Dict],
                         step: int = 0,
                         out_file: Optional[str] = None) -> np.ndarray:
        """Draw :meth:`draw_ranked_lists` and send it to the backends (and
        to ``out_file`` if given).

        Args:
            name (str): Image name in the backends.
            rows (Sequence[dict]): See :meth:`draw_ranked_lists`.
            step (int): Step (epoch) of the backends. Defaults to 0.
            out_file (str, optional): Also write a PNG/JPG here.

        Returns:
            np.ndarray: The picture (RGB uint8).
        """
        return self._emit(name, self.draw_ranked_lists(rows), step, out_file)

    # ------------------------------------------------------ neighbour grid
    def draw_class_graph(self, epochs: Sequence[Dict]) -> np.ndarray:
        """Class-graph neighbours, one row per centre class and one block
        of columns per epoch (the Graph Sampler paper's Fig. 5).

        Args:
            epochs (Sequence[dict]): One dict per epoch with ``epoch``
                (int, its header), ``images`` (a list over centre classes of
                lists ``[centre image, neighbour images...]``), ``labels``
                (the same nesting, class ids written under the images) and
                optionally ``look_alike`` (the same nesting of the
                neighbours only: True frames the neighbour in
                :attr:`MATCH_COLOR`, False in :attr:`IGNORED_COLOR`; without
                it neighbours get a light neutral frame). Every epoch must
                have the same number of rows.

        Returns:
            np.ndarray: RGB uint8; one row per centre class, W grows with
            the number of epochs and neighbours.
        """
        if not epochs:
            raise ValueError('draw_class_graph: no epoch to draw')
        num_rows = len(epochs[0]['images'])
        if num_rows == 0:
            raise ValueError('draw_class_graph: no class to draw')
        rows: List[List[Optional[Cell]]] = [[] for _ in range(num_rows)]
        headers, breaks, col = [], [], 0
        for block in epochs:
            images, labels = block['images'], block['labels']
            look = block.get('look_alike')
            if len(images) != num_rows or len(labels) != num_rows:
                raise ValueError(
                    'draw_class_graph: every epoch needs the same number of '
                    f'rows ({num_rows}); epoch {block.get("epoch")} has '
                    f'{len(images)} images and {len(labels)} label rows')
            width = max(len(r) for r in images)
            if col:
                breaks.append(col)
            headers.append((col, f'epoch {block["epoch"]}'))
            for r in range(num_rows):
                row = []
                for j, (img, lab) in enumerate(zip(images[r], labels[r])):
                    if j == 0:
                        color = self.QUERY_COLOR
                    elif look is None:
                        color = self.NEUTRAL_COLOR
                    else:
                        color = (self.MATCH_COLOR if look[r][j - 1] else
                                 self.IGNORED_COLOR)
                    row.append(Cell(img, color, str(lab)))
                rows[r].extend(row + [None] * (width - len(row)))
            col += width
        return self._compose(rows, breaks=breaks, headers=headers)

    def add_class_graph(self,
                        name: str,
                        epochs: Sequence[Dict],
                        step: int = 0,
                        out_file: Optional[str] = None) -> np.ndarray:
        """Draw :meth:`draw_class_graph` and send it to the backends (and to
        ``out_file`` if given). Arguments as :meth:`add_ranked_lists`."""
        return self._emit(name, self.draw_class_graph(epochs), step,
                          out_file)

    # ------------------------------------------------------ correspondence
    def draw_correspondence(self,
                            query: ImageLike,
                            gallery: ImageLike,
                            corr: Dict[str, torch.Tensor],
                            feat_size: Tuple[int, int],
                            top: int = 20,
                            height: int = 256,
                            title: Optional[str] = None,
                            cmap: str = 'jet') -> np.ndarray:
        """QAConv local correspondences of one pair (the QAConv paper's
        Fig. 2): query left, gallery right, a line from each of the ``top``
        strongest locations (over the 2 x hw query and gallery locations,
        by their contribution to the score) to its best match on the other
        side, coloured by the contribution (colour map ``cmap``, low to
        high over the drawn lines).

        Args:
            query (str | np.ndarray): Query image.
            gallery (str | np.ndarray): Gallery image.
            corr (dict): Output of
                :meth:`~mmreid_gs.models.heads.QAConvHead.pair_correspondence`.
            feat_size (tuple[int, int]): (h, w) of the feature maps.
            top (int): Lines drawn. Defaults to 20.
            height (int): Height of each drawn image. Defaults to 256.
            title (str, optional): Title; defaults to the pair's score.
            cmap (str): Matplotlib colour map. Defaults to 'jet'.

        Returns:
            np.ndarray: RGB uint8 [H, W, 3].
        """
        import matplotlib
        fh, fw = int(feat_size[0]), int(feat_size[1])
        hw = fh * fw
        q_contrib = to_numpy(corr['query_contrib'], np.float64)
        g_contrib = to_numpy(corr['gallery_contrib'], np.float64)
        if q_contrib.size != hw or g_contrib.size != hw:
            raise ValueError(
                f'draw_correspondence: feat_size {feat_size} has {hw} '
                f'locations but the correspondence has {q_contrib.size}')
        if int(top) < 1:
            raise ValueError(f'top must be >= 1, got {top}')
        q_img, g_img = load_rgb(query), load_rgb(gallery)
        size = []
        for img in (q_img, g_img):
            w = max(8, int(round(img.shape[1] * height / img.shape[0])))
            size.append((int(height), w))
        f, gap, margin = self.frame, 40, 6
        line_h = self._pt_to_px(self.font_size * 1.2) + 6
        cap_h = self._pt_to_px(self.font_size) + 6
        bar_w, bar_h = 90, 8
        top_y = margin + 2 * line_h
        x_q, x_g = margin, margin + size[0][1] + 2 * f + gap
        width = max(x_g + size[1][1] + 2 * f + margin, 300)
        bar_y = top_y + height + 2 * f + cap_h + 4
        canvas = np.empty((bar_y + bar_h + cap_h + margin, width, 3),
                          dtype=np.uint8)
        canvas[:] = self.BACKGROUND
        for x0, img, (h, w) in ((x_q, q_img, size[0]),
                                (x_g, g_img, size[1])):
            canvas[top_y:top_y + h + 2 * f, x0:x0 + w + 2 * f] = \
                self.NEUTRAL_COLOR
            canvas[top_y + f:top_y + f + h, x0 + f:x0 + f + w] = fit_image(
                img, (h, w))

        def centre(loc, x0, w):
            y, x = np.divmod(np.asarray(loc), fw)
            return (x0 + f + (x + .5) * w / fw,
                    top_y + f + (y + .5) * height / fh)

        # candidates: query locations then gallery locations
        contrib = np.concatenate([q_contrib, g_contrib])
        order = np.argsort(-contrib, kind='stable')[:min(int(top), 2 * hw)]
        q_arg = to_numpy(corr['query_argmax']).astype(np.int64)
        g_arg = to_numpy(corr['gallery_argmax']).astype(np.int64)
        is_q = order < hw
        loc_q = np.where(is_q, order, g_arg[np.clip(order - hw, 0, hw - 1)])
        loc_g = np.where(is_q, q_arg[np.clip(order, 0, hw - 1)], order - hw)
        xq, yq = centre(loc_q, x_q, size[0][1])
        xg, yg = centre(loc_g, x_g, size[1][1])
        vals = contrib[order]
        lo, hi = float(vals.min()), float(vals.max())
        norm = (vals - lo) / (hi - lo) if hi > lo else np.ones_like(vals)
        colormap = matplotlib.colormaps[cmap]

        def rgb(v):
            return tuple(int(round(255 * c)) for c in colormap(v)[:3])

        colors = [rgb(v) for v in norm]
        # colour bar of the contributions, low to high
        label_w = 10 * self._pt_to_px(self.font_size)
        bar_x = margin + label_w
        for i in range(bar_w):
            canvas[bar_y:bar_y + bar_h, bar_x + i] = rgb(i / (bar_w - 1))
        score = float(to_numpy(corr['score'], np.float64).reshape(-1)[0])
        self.last_layout = dict(
            query=(x_q, top_y, x_q + size[0][1] + 2 * f,
                   top_y + height + 2 * f),
            gallery=(x_g, top_y, x_g + size[1][1] + 2 * f,
                     top_y + height + 2 * f))
        self.set_image(canvas)
        cap_y = top_y + height + 2 * f + 1
        self.draw_texts(
            [
                title or f'QAConv score {score:.2f}',
                f'{len(order)} strongest of {2 * hw} locations',
                'query', 'gallery', f'contribution {lo:.3f}', f'{hi:.3f}'
            ],
            np.array([[margin, margin], [margin, margin + line_h],
                      [x_q + f + size[0][1] / 2, cap_y],
                      [x_g + f + size[1][1] / 2, cap_y],
                      [bar_x - 4, bar_y - 3], [bar_x + bar_w + 4, bar_y - 3]],
                     dtype=np.float64),
            font_sizes=[self.font_size * 1.2] + [self.font_size] * 5,
            colors=[(0, 0, 0)] + [(60, 60, 60)] * 5,
            vertical_alignments='top',
            horizontal_alignments=[
                'left', 'left', 'center', 'center', 'right', 'left'
            ])
        # weakest first, so that the strongest lines are on top
        draw = np.argsort(norm, kind='stable')
        self.draw_lines(
            np.stack([xq[draw], xg[draw]], axis=1),
            np.stack([yq[draw], yg[draw]], axis=1),
            colors=[colors[i] for i in draw], line_widths=1.5)
        points = np.concatenate([np.stack([xq, yq], 1),
                                 np.stack([xg, yg], 1)])
        self.draw_circles(points, np.full(len(points), 2.5),
                          edge_colors=colors + colors, face_colors=colors +
                          colors, alpha=1.0, line_widths=1)
        return self.get_image()

    def add_correspondence(self,
                           name: str,
                           query: ImageLike,
                           gallery: ImageLike,
                           corr: Dict[str, torch.Tensor],
                           feat_size: Tuple[int, int],
                           top: int = 20,
                           step: int = 0,
                           out_file: Optional[str] = None,
                           **kwargs) -> np.ndarray:
        """Draw :meth:`draw_correspondence` and send it to the backends (and
        to ``out_file`` if given)."""
        img = self.draw_correspondence(query, gallery, corr, feat_size,
                                       top=top, **kwargs)
        return self._emit(name, img, step, out_file)
