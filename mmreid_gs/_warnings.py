"""Foreign warnings that every run would print and that we cannot fix.

Each filter matches one message of one package exactly; everything else is
shown as usual. Installed when ``mmreid_gs`` is imported (before mmcv and
mmpretrain are), so that library users and the tools see the same output.
"""
import logging
import re
import warnings

#: (category, exact start of the message, why it cannot be fixed here)
FOREIGN_WARNINGS = (
    (UserWarning, 'Fail to import ``MultiScaleDeformableAttention``',
     'mmcv-lite has no compiled ops; mmpretrain imports the transformer '
     'bricks of mmcv, which warn although we never use that module'),
    (UserWarning, "Only use 'alpha' for pillow backend.",
     "mmcv.adjust_color warns on every call with backend='pillow', which "
     'the colour jitter of the public augmentation uses'),
    (FutureWarning, '`broadcast_buffers` is deprecated. Use '
     '`forward_sync_buffers` instead.',
     "MMEngine's default DDP wrapper (GPU launch) passes broadcast_buffers="
     'False, deprecated since PyTorch 2.13; our CPU launch passes '
     'forward_sync_buffers'),
)

#: MMEngine logger messages (not ``warnings``) of the same kind: its
#: CheckpointHook builds a deprecated ``FileClient`` on every run.
FOREIGN_LOG_MESSAGES = (
    '"FileClient" will be deprecated in future.',
    '"HardDiskBackend" is the alias of "LocalBackend" and the former will '
    'be deprecated in future.',
)


def silence_foreign_warnings() -> None:
    """Ignore exactly the warnings of :data:`FOREIGN_WARNINGS`."""
    for category, message, _ in FOREIGN_WARNINGS:
        warnings.filterwarnings(
            'ignore', message=re.escape(message), category=category)


class ForeignLogFilter(logging.Filter):
    """Drop the MMEngine log records of :data:`FOREIGN_LOG_MESSAGES`."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not message.startswith(FOREIGN_LOG_MESSAGES)
