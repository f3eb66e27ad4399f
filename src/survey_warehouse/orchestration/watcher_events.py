"""Fewer XCom writes from the dbt build of the `dbt_build` group (Cosmos's watcher mode).

Cosmos 1.15's watcher producer writes a node's dbt event to XCom at every step of its life (NodeStart,
NodeCompiling, NodeExecuting, NodeFinished), for every node, tests included, through one lock that all of dbt's
threads share. A sensor reads that event once, when its node has ended, to print it in its log; no sensor reads a
test's own event (tests report through their model's `.test` sensor). Each write is an Airflow API call, so on this
project they cost more than the dbt build itself: about 450 writes and 6 s per wave.

`install()` keeps the writes a sensor reads: the finished event of a node that has a sensor of its own (seeds,
models, snapshots) and every error event. The nodes' states, which the sensors decide on, are written by Cosmos as
before. This is what astronomer-cosmos#2777 proposes upstream; drop this module when a release does it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

SENSOR_RESOURCE_TYPES = frozenset({"seed", "model", "snapshot"})


def event_is_read(dbt_log: dict[str, Any], error_events: frozenset[str]) -> bool:
    """Whether a sensor will ever read this dbt event (a parsed JSON log line)."""
    name = (dbt_log.get("info") or {}).get("name")
    if name in error_events:
        return True
    node = ((dbt_log.get("data") or {}).get("node_info")) or {}
    return name == "NodeFinished" and node.get("resource_type") in SENSOR_RESOURCE_TYPES


def install() -> bool:
    """Filter the producer's event writes (idempotent). False when this Cosmos has no such hook, i.e. it changed:
    then nothing is filtered and Cosmos runs as shipped."""
    try:
        from cosmos.operators._watcher import base
    except ImportError:
        return False
    original: Callable[[Any, dict[str, Any]], None] | None = getattr(base, "_process_dbt_log_event", None)
    error_events = getattr(base, "_DBT_ERROR_EVENTS_TYPES", None)
    if original is None or error_events is None:
        log.warning("cosmos.operators._watcher.base has changed: the producer's dbt events are not filtered")
        return False
    if getattr(original, "survey_filtered", False):
        return True

    @functools.wraps(original)
    def process_read_events(task_instance: Any, dbt_log: dict[str, Any]) -> None:
        if event_is_read(dbt_log, error_events):
            original(task_instance, dbt_log)

    process_read_events.survey_filtered = True  # type: ignore[attr-defined]
    base._process_dbt_log_event = process_read_events
    return True
