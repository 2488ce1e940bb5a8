"""From results to the inputs of :class:`ReIDVisualizer`: which queries and
classes to show, and their rows (shared by the tools and the hooks)."""
from typing import Dict, List, Optional, Sequence

import numpy as np
from mmengine.config import Config

from mmreid_gs.utils.errors import ReIDUserError
from .backends import VIS_BACKENDS, check_vis_backends
from .drawing import ranked_list_title
from .ranking import average_precisions, query_ranking
from .reid_visualizer import ReIDVisualizer


def spread_indices(total: int, num: int) -> np.ndarray:
    """``num`` indices spread evenly over ``range(total)`` (all of them when
    ``num >= total``): a fixed, reproducible choice.

    Args:
        total (int): Number of items.
        num (int): Number wanted (>= 1).

    Returns:
        np.ndarray: int64 sorted unique indices.
    """
    if int(num) < 1:
        raise ReIDUserError(f'the number of items to show must be >= 1, got '
                            f'{num}')
    if total <= num:
        return np.arange(total, dtype=np.int64)
    return np.unique(
        np.round(np.linspace(0, total - 1, int(num))).astype(np.int64))


def select_queries(scores,
                   query_pids,
                   gallery_pids,
                   query_camids,
                   gallery_camids,
                   num: int = 8,
                   worst: bool = False,
                   query_ids: Optional[Sequence[int]] = None) -> np.ndarray:
    """Queries to draw.

    Args:
        scores (array-like): [q, g] scores.
        query_pids, gallery_pids, query_camids, gallery_camids: Labels.
        num (int): How many (ignored with ``query_ids``). Defaults to 8.
        worst (bool): The ``num`` queries with the lowest AP (queries without
            a valid match skipped; ties by index) instead of ``num`` spread
            over the query set. Defaults to False.
        query_ids (Sequence[int], optional): Explicit query indices.

    Returns:
        np.ndarray: int64 query indices.
    """
    num_q = np.asarray(scores).shape[0]
    if query_ids is not None:
        ids = np.asarray(list(query_ids), dtype=np.int64)
        bad = ids[(ids < 0) | (ids >= num_q)]
        if bad.size:
            raise ReIDUserError(f'query index {int(bad[0])} out of range: the '
                                f'set has {num_q} queries (0..{num_q - 1})')
        return ids
    if not worst:
        return spread_indices(num_q, num)
    aps = average_precisions(scores, query_pids, gallery_pids, query_camids,
                             gallery_camids)
    valid = np.flatnonzero(~np.isnan(aps))
    if valid.size == 0:
        raise ReIDUserError('--worst: no query has a valid match in the '
                            'gallery')
    order = valid[np.lexsort((valid, aps[valid]))]
    return order[:int(num)]


def ranked_list_rows(scores,
                     query_pids,
                     gallery_pids,
                     query_camids,
                     gallery_camids,
                     query_paths: Sequence[str],
                     gallery_paths: Sequence[str],
                     queries: Sequence[int],
                     topk: int = 10) -> List[Dict]:
    """Rows of :meth:`ReIDVisualizer.draw_ranked_lists` for some queries.

    Args:
        scores (array-like): [q, g] scores, higher = more similar.
        query_pids, gallery_pids, query_camids, gallery_camids: Labels.
        query_paths (Sequence[str]): [q] query image paths.
        gallery_paths (Sequence[str]): [g] gallery image paths.
        queries (Sequence[int]): Query indices to draw.
        topk (int): Gallery items per row. Defaults to 10.

    Returns:
        list[dict]: One row per query, plus its ``ap`` and ``first_hit``.
    """
    scores = np.asarray(scores)
    q_pids, q_cams = np.asarray(query_pids), np.asarray(query_camids)
    if scores.ndim != 2 or scores.shape != (len(query_paths),
                                            len(gallery_paths)):
        raise ReIDUserError(
            f'scores must be [{len(query_paths)}, {len(gallery_paths)}] '
            f'(query x gallery paths), got shape {scores.shape}')
    rows = []
    for i in queries:
        i = int(i)
        r = query_ranking(scores[i], q_pids[i], q_cams[i], gallery_pids,
                          gallery_camids, topk=topk)
        label = f'query {i} (id {q_pids[i]}, cam {q_cams[i]})'
        rows.append(
            dict(query=str(query_paths[i]),
                 gallery=[str(gallery_paths[j]) for j in r['indices']],
                 scores=r['scores'],
                 kinds=r['kinds'],
                 title=ranked_list_title(label, r),
                 ap=r['ap'],
                 first_hit=r['first_hit']))
    return rows


def class_graph_epoch(epoch: int,
                      neighbors,
                      img_paths: Sequence[str],
                      classes: Sequence[int],
                      families=None) -> Dict:
    """One epoch block of :meth:`ReIDVisualizer.draw_class_graph`.

    Args:
        epoch (int): The epoch (its header).
        neighbors (array-like): [C, P-1] neighbour classes of every class.
        img_paths (Sequence[str | np.ndarray]): [C] the image of each class
            that the graph was built from.
        classes (Sequence[int]): Centre classes (one row each).
        families (array-like, optional): [C] family of look-alikes of every
            class (-1 unknown): frames neighbours of the centre's family.

    Returns:
        dict: ``epoch``, ``images``, ``labels`` and (with families)
        ``look_alike``.
    """
    nbrs = np.asarray(neighbors)
    if nbrs.ndim != 2 or nbrs.shape[0] != len(img_paths):
        raise ReIDUserError(
            f'epoch {epoch}: neighbors must be [C, P-1] with C = '
            f'{len(img_paths)} image paths, got shape {nbrs.shape}')
    images, labels, look = [], [], []
    for c in classes:
        c = int(c)
        if not 0 <= c < nbrs.shape[0]:
            raise ReIDUserError(f'class {c} out of range: the graph has '
                                f'{nbrs.shape[0]} classes')
        row = [c] + [int(n) for n in nbrs[c]]
        labels.append(row)
        images.append([
            p if isinstance(p, np.ndarray) else str(p)
            for p in (img_paths[k] for k in row)
        ])
        if families is not None:
            fam = np.asarray(families)
            look.append([
                bool(fam[c] >= 0 and fam[n] == fam[c]) for n in row[1:]
            ])
    out = dict(epoch=int(epoch), images=images, labels=labels)
    if families is not None:
        out['look_alike'] = look
    return out


def tool_visualizer(name: str,
                    backends: Sequence[str] = (),
                    save_dir: Optional[str] = None,
                    cfg=None,
                    cell_size: Optional[Sequence[int]] = None):
    """The :class:`ReIDVisualizer` of a drawing tool.

    Args:
        name (str): Instance name.
        backends (Sequence[str]): ``--vis-backend`` names (keys of
            :data:`~.backends.VIS_BACKENDS`) the pictures also go to.
        save_dir (str, optional): Folder of the backends' files (needed
            with backends).
        cfg (Config, optional): A config whose ``visualizer`` (if a
            ``ReIDVisualizer``) gives ``cell_size``, ``frame`` and
            ``font_size``.
        cell_size (Sequence[int], optional): (h, w) of the drawn images,
            overriding the config.

    Returns:
        ReIDVisualizer: The visualizer.
    """
    kwargs = {}
    vis_cfg = (cfg.get('visualizer') if cfg is not None else None) or {}
    if str(vis_cfg.get('type', '')).endswith('ReIDVisualizer'):
        kwargs = {
            k: vis_cfg[k]
            for k in ('cell_size', 'frame', 'font_size') if k in vis_cfg
        }
    if cell_size is not None:
        kwargs['cell_size'] = tuple(int(v) for v in cell_size)
    vis_backends = []
    for b in backends or ():
        if b not in VIS_BACKENDS:
            raise ReIDUserError(f'unknown --vis-backend {b!r}; choose from '
                                f'{", ".join(VIS_BACKENDS)}')
        vis_backends.append(dict(type=VIS_BACKENDS[b][0]))
    check_vis_backends(Config(dict(visualizer=dict(
        vis_backends=vis_backends))))
    if vis_backends and save_dir is None:
        raise ReIDUserError('backends need a save_dir')
    return ReIDVisualizer(
        name=name, vis_backends=vis_backends or None,
        save_dir=save_dir if vis_backends else None, **kwargs)
