"""MMEngine's logger hook: a race-free test summary, a log line at least
once per epoch, and the final metrics kept for the end-of-run summary."""
import os.path as osp
from typing import Dict, Optional

from mmengine.dist import is_main_process
from mmengine.fileio import dump
from mmengine.hooks import LoggerHook

from mmreid_gs.registry import HOOKS


@HOOKS.register_module()
class ReIDLoggerHook(LoggerHook):
    """:class:`~mmengine.hooks.LoggerHook` for re-ID runs.

    Differences from MMEngine's hook:

    - The test summary JSON is written by rank 0 only. In MMEngine 0.10
      every rank dumps the test metrics to the same
      ``<log_dir>/<timestamp>.json``; under ``tools/dist_test.sh`` the
      writes race and the file can end up corrupt (seen with 2 processes).
    - ``ignore_last`` defaults to ``False``: the last iteration of every
      epoch is logged whatever the interval, so a short epoch (24
      iterations with ``interval=50``) or the tail of a long one is never
      silent.
    - The first training iteration of a run is logged too (its time tells
      a user on a slow machine how long an epoch will take).
    - :attr:`last_metrics` holds the metrics of the last validation or test
      (``tools/train.py`` and ``tools/test.py`` print them at the end).

    Args:
        ignore_last (bool): As for MMEngine's hook. Defaults to False.
        **kwargs: Other arguments of :class:`~mmengine.hooks.LoggerHook`.
    """

    def __init__(self, ignore_last: bool = False, **kwargs):
        super().__init__(ignore_last=ignore_last, **kwargs)
        self.last_metrics: Optional[Dict[str, float]] = None
        self._first_iter: Optional[int] = None

    def before_train(self, runner) -> None:
        self._first_iter = runner.iter

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs=None) -> None:
        super().after_train_iter(runner, batch_idx, data_batch, outputs)
        # runner.iter counts the iteration after this hook
        first = runner.iter == self._first_iter
        logged = self.every_n_inner_iters(batch_idx, self.interval) or \
            self.end_of_epoch(runner.train_dataloader, batch_idx)
        if first and not logged:
            _, log_str = runner.log_processor.get_log_after_iter(
                runner, batch_idx, 'train')
            runner.logger.info(log_str)

    def after_val_epoch(self,
                        runner,
                        metrics: Optional[Dict[str, float]] = None) -> None:
        self.last_metrics = dict(metrics) if metrics is not None else None
        super().after_val_epoch(runner, metrics)

    def after_test_epoch(self,
                         runner,
                         metrics: Optional[Dict[str, float]] = None) -> None:
        self.last_metrics = dict(metrics) if metrics is not None else None
        tag, log_str = runner.log_processor.get_log_after_epoch(
            runner, len(runner.test_dataloader), 'test', with_non_scalar=True)
        runner.logger.info(log_str)
        if is_main_process():
            dump(
                self._process_tags(tag),
                osp.join(runner.log_dir, self.json_log_path))
