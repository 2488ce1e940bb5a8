"""A progress bar that suits terminals and log files alike."""
import sys

from mmengine.utils import ProgressBar as MMEngineProgressBar
from mmengine.utils import Timer


def _is_terminal(file) -> bool:
    try:
        return bool(file.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed file
        return False


class ProgressBar(MMEngineProgressBar):
    """MMEngine's :class:`~mmengine.utils.ProgressBar` on a terminal; plain
    lines elsewhere.

    On a terminal the bar redraws itself in place (carriage returns), as
    MMEngine's. Written to a file or a pipe (a log file, ``| tee``, a
    notebook), those carriage returns pile up hundreds of updates on one
    line; there the bar writes one plain line each time the progress
    crosses another ``1 / lines`` of the total (every 10% by default):
    ``30/300 (10%), 52.1 task/s, elapsed: 1s, ETA: 5s``.

    As with MMEngine's bar, the caller ends the last line (writes ``'\\n'``)
    when the work is done.

    Args:
        task_num (int): Number of steps. Defaults to 0 (unknown: a line
            every time the count of completed steps doubles).
        bar_width (int): Width of the terminal bar. Defaults to 50.
        start (bool): Start in the constructor. Defaults to True.
        file: Where to write. Defaults to ``sys.stdout``.
        lines (int): Lines written over the whole task off a terminal.
            Defaults to 10.
    """

    def __init__(self,
                 task_num: int = 0,
                 bar_width: int = 50,
                 start: bool = True,
                 file=None,
                 lines: int = 10):
        file = sys.stdout if file is None else file
        if lines < 1:
            raise ValueError(f'lines must be >= 1, got {lines}')
        self.plain = not _is_terminal(file)
        self.lines = int(lines)
        self._written = 0  # plain lines written after the first
        self._next = 1  # the count that writes the next line (task_num 0)
        super().__init__(task_num, bar_width, start, file)

    def start(self):
        if not self.plain:
            return super().start()
        total = f'/{self.task_num}' if self.task_num > 0 else ''
        self.file.write(f'0{total}, elapsed: 0s')
        self.file.flush()
        self.timer = Timer()

    def update(self, num_tasks: int = 1):
        """Count ``num_tasks`` more completed steps.

        Args:
            num_tasks (int): Steps completed since the last call.
        """
        if not self.plain:
            return super().update(num_tasks)
        assert num_tasks > 0
        self.completed += num_tasks
        if self.task_num > 0:
            reached = min(self.lines,
                          self.completed * self.lines // self.task_num)
            if reached <= self._written:
                return
            self._written = reached
        else:
            if self.completed < self._next:
                return
            while self._next <= self.completed:
                self._next *= 2
        elapsed = self.timer.since_start()
        fps = self.completed / elapsed if elapsed > 0 else float('inf')
        if self.task_num > 0:
            fraction = self.completed / self.task_num
            eta = int(elapsed * (1 - fraction) / fraction + 0.5)
            self.file.write(
                f'\n{self.completed}/{self.task_num} '
                f'({100 * fraction:.0f}%), {fps:.1f} task/s, elapsed: '
                f'{int(elapsed + 0.5)}s, ETA: {eta}s')
        else:
            self.file.write(f'\ncompleted: {self.completed}, elapsed: '
                            f'{int(elapsed + 0.5)}s, {fps:.1f} tasks/s')
        self.file.flush()
