"""Quality gates with Great Expectations: the raw wave before dbt uses it, the marts before they are published.

- `batches`: exactly the data a gate validates (one load of one wave, or the marts as dbt just built them).
- `suites`: the suites in expectations/ as reviewable JSON, filled in per wave from the wave spec and the codebook.
- `reports`: what a gate found, as a readable report kept beside the Data Docs.
- `checkpoints`: Batch -> ValidationDefinition -> Checkpoint on either warehouse, and running them.
"""

from __future__ import annotations

from survey_warehouse.errors import QualityGateFailed
from survey_warehouse.quality.batches import mart_tables, quarantine_summary, removal_summary
from survey_warehouse.quality.checkpoints import file_context, marts_checkpoint, raw_wave_checkpoint, run_gate
from survey_warehouse.quality.reports import Failure, GateReport, UnreadableReport, report_path

__all__ = [
    "Failure",
    "GateReport",
    "QualityGateFailed",
    "UnreadableReport",
    "file_context",
    "mart_tables",
    "marts_checkpoint",
    "quarantine_summary",
    "raw_wave_checkpoint",
    "removal_summary",
    "report_path",
    "run_gate",
]
