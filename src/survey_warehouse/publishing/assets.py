"""The Airflow assets of the warehouse: data that DAGs produce, and that other DAGs can be scheduled on.

`SURVEY_MARTS` is the published marts, wherever they are published (the DuckDB file, or the PostgreSQL schema
`marts`): `survey_waves` updates it each time its `publish_marts` step publishes, and a DAG scheduled on it
(`schedule=[SURVEY_MARTS]`, e.g. `survey_marts_exports`) runs after every publication, not on a clock. The event's
extra says when the marts were published, where and from which loads. The URI is logical (the `x-` scheme is for
URIs that no Airflow provider interprets), so the asset stays the same when the warehouse moves.
"""

from __future__ import annotations

from airflow.sdk import Asset

SURVEY_MARTS = Asset(name="survey_marts", uri="x-survey-warehouse://published/marts", group="survey")
