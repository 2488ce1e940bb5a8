"""MMEngine's logger hook with a race-free test summary."""
import os.path as osp
from typing import Dict, Optional

from mmengine.dist import is_main_process
from mmengine.fileio import dump
from mmengine.hooks import LoggerHook

from mmreid_gs.registry import HOOKS


@HOOKS.register_module()
class ReIDLoggerHook(LoggerHook):
    """:class:`~mmengine.hooks.LoggerHook` whose test summary JSON is written
    by rank 0 only.

    In MMEngine 0.10 every rank dumps the test metrics to the same
    ``<log_dir>/<timestamp>.json``; under ``tools/dist_test.sh`` the writes
    race and the file can end up corrupt (seen with 2 processes). Everything
    else is MMEngine's hook unchanged.
    """

    def after_test_epoch(self,
                         runner,
                         metrics: Optional[Dict[str, float]] = None) -> None:
        tag, log_str = runner.log_processor.get_log_after_epoch(
            runner, len(runner.test_dataloader), 'test', with_non_scalar=True)
        runner.logger.info(log_str)
        if is_main_process():
            dump(
                self._process_tags(tag),
                osp.join(runner.log_dir, self.json_log_path))
