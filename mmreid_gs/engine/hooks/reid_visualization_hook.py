"""Hook that draws ranked lists of fixed queries at every validation."""
import os.path as osp
from typing import Optional, Sequence

import mmcv
from mmengine.hooks import Hook

from mmreid_gs.registry import HOOKS
from mmreid_gs.utils.errors import ReIDUserError, ReIDUserTypeError
from mmreid_gs.visualization import (ReIDVisualizer, ranked_list_rows,
                                     select_queries)


@HOOKS.register_module()
class ReIDVisualizationHook(Hook):
    """Draw the ranked lists of a fixed set of queries of every test set
    after each validation (and test) into the visualizer's backends.

    The loop (:class:`ReIDValLoop` / :class:`ReIDTestLoop`) is asked to keep
    its per-set scores (``keep_outputs``); after the epoch the hook draws,
    for every set, one picture with one row per query (the query, its
    ``topk`` gallery items framed green / red / grey for match / non-match /
    ignored by the protocol, the score under each, AP and first-hit rank in
    the row title) and sends it with ``runner.visualizer.add_image`` as
    ``rank_list_<set>`` (step = epoch for validation, 0 for a test): with
    ``vis_backends=[dict(type='TensorboardVisBackend')]`` it appears in
    TensorBoard's image tab, with ``LocalVisBackend`` under
    ``<work_dir>/<timestamp>/vis_data/vis_image/``. The same queries (spread
    evenly over each query set, or ``query_ids``) are drawn every time, so
    pictures of successive validations compare directly. Rank 0 only.

    Args:
        num_queries (int): Queries drawn per set. Defaults to 8.
        query_ids (Sequence[int], optional): Explicit query indices (of every
            set) instead of ``num_queries`` spread ones.
        topk (int): Gallery items per query. Defaults to 10.
        sets (Sequence[str], optional): Names of the sets to draw. Defaults
            to all.
        draw_test (bool): Also draw after ``runner.test()``. Defaults to
            True.
        test_out_dir (str, optional): After a test, also write
            ``rank_list_<set>.png`` into this folder (relative to the work
            dir).

    Example:
        >>> custom_hooks = [dict(type='ReIDVisualizationHook',
        ...                      num_queries=6, topk=8)]
    """

    priority = 'LOW'

    def __init__(self,
                 num_queries: int = 8,
                 query_ids: Optional[Sequence[int]] = None,
                 topk: int = 10,
                 sets: Optional[Sequence[str]] = None,
                 draw_test: bool = True,
                 test_out_dir: Optional[str] = None) -> None:
        if int(num_queries) < 1 or int(topk) < 1:
            raise ReIDUserError('ReIDVisualizationHook: num_queries and topk '
                                f'must be >= 1; got {num_queries}, {topk}.')
        self.num_queries = int(num_queries)
        self.query_ids = None if query_ids is None else [
            int(i) for i in query_ids
        ]
        self.topk = int(topk)
        self.sets = None if sets is None else list(sets)
        self.draw_test = bool(draw_test)
        self.test_out_dir = test_out_dir
        self._owns_outputs = False

    def _keep_outputs(self, loop) -> None:
        if not hasattr(loop, 'keep_outputs'):
            raise ReIDUserTypeError(
                'ReIDVisualizationHook needs a loop that keeps per-set '
                f'outputs (ReIDValLoop / ReIDTestLoop); got '
                f'{type(loop).__name__}.')
        self._owns_outputs = not loop.keep_outputs
        loop.keep_outputs = True

    def before_val(self, runner) -> None:
        """Make the validation loop keep its scores."""
        self._keep_outputs(runner.val_loop)

    def before_test(self, runner) -> None:
        """Make the test loop keep its scores."""
        if self.draw_test:
            self._keep_outputs(runner.test_loop)

    def after_val_epoch(self, runner, metrics=None) -> None:
        """Draw the ranked lists of the validation."""
        self._draw(runner, runner.val_loop, step=runner.epoch)

    def after_test_epoch(self, runner, metrics=None) -> None:
        """Draw the ranked lists of the test."""
        if self.draw_test:
            out_dir = None if self.test_out_dir is None else osp.join(
                runner.work_dir, self.test_out_dir)
            self._draw(runner, runner.test_loop, step=0, out_dir=out_dir)

    def _draw(self, runner, loop, step: int,
              out_dir: Optional[str] = None) -> None:
        outputs = getattr(loop, 'outputs', {})
        if runner.rank == 0:
            drawer = ReIDVisualizer.drawer_for(runner.visualizer)
            for name, out in outputs.items():
                if self.sets is not None and name not in self.sets:
                    continue
                labels = (out['scores'], out['query_pids'],
                          out['gallery_pids'], out['query_camids'],
                          out['gallery_camids'])
                queries = select_queries(*labels, num=self.num_queries,
                                         query_ids=self.query_ids)
                rows = ranked_list_rows(*labels, out['query_paths'],
                                        out['gallery_paths'], queries,
                                        topk=self.topk)
                image = drawer.draw_ranked_lists(rows)
                runner.visualizer.add_image(f'rank_list_{name}', image,
                                            step=step)
                if out_dir is not None:
                    mmcv.imwrite(image[..., ::-1],
                                 osp.join(out_dir, f'rank_list_{name}.png'))
            runner.logger.info(
                f'ReIDVisualizationHook: ranked lists of {len(outputs)} '
                f'set(s) drawn (step {step}).')
        if self._owns_outputs:
            loop.outputs = {}
            loop.keep_outputs = False
            self._owns_outputs = False
