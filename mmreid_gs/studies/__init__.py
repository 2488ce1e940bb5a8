"""Studies: declarative configs (``configs/studies/``) trained over seeds,
every finished run one line of ``docs/studies/<study>/runs.jsonl``, tables
and plots rendered from that file alone."""
from .records import (KEY_FIELDS, REQUIRED_FIELDS, append_record,
                      build_record, load_records, missing_runs, record_key,
                      records_path, status_lines)
from .specs import load_study, study_names, study_preset

__all__ = [
    'KEY_FIELDS', 'REQUIRED_FIELDS', 'append_record', 'build_record',
    'load_records', 'missing_runs', 'record_key', 'records_path',
    'status_lines', 'load_study', 'study_names', 'study_preset'
]
