"""The dbt build writes to XCom only the events its sensors read (survey_warehouse.orchestration.watcher_events)."""

from __future__ import annotations

from typing import Any

import pytest

from survey_warehouse.orchestration import watcher_events


def _event(name: str, resource_type: str | None = "model", status: str = "success") -> dict[str, Any]:
    node = {"unique_id": f"{resource_type}.survey_warehouse.x", "resource_type": resource_type, "node_status": status}
    return {"info": {"name": name, "msg": "..."}, "data": {"node_info": node} if resource_type else {}}


class FakeTaskInstance:
    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


@pytest.mark.parametrize(
    ("name", "resource_type", "read"),
    [
        ("NodeFinished", "model", True),
        ("NodeFinished", "seed", True),
        ("NodeFinished", "snapshot", True),
        ("NodeStart", "model", False),
        ("NodeCompiling", "model", False),
        ("NodeExecuting", "model", False),
        ("NodeFinished", "test", False),  # a test reports through its model's `.test` sensor
        ("NodeFinished", "unit_test", False),
        ("RunResultError", "model", True),  # errors always, whatever the node
        ("RunResultError", "test", True),
        ("CatchableExceptionOnRun", None, True),
        ("MainReportVersion", None, False),
    ],
)
def test_only_the_events_a_sensor_reads_are_kept(name: str, resource_type: str | None, read: bool) -> None:
    from cosmos.operators._watcher import base

    assert watcher_events.event_is_read(_event(name, resource_type), base._DBT_ERROR_EVENTS_TYPES) is read


def test_install_filters_the_producers_writes_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from cosmos.operators._watcher import base

    monkeypatch.setattr(base, "_process_dbt_log_event", base._process_dbt_log_event)  # undone after the test
    assert watcher_events.install() and watcher_events.install()
    assert base._process_dbt_log_event.__wrapped__.__name__ == "_process_dbt_log_event"  # wrapped once, not twice
    assert not hasattr(base._process_dbt_log_event.__wrapped__, "__wrapped__")

    ti = FakeTaskInstance()
    for name in ("NodeStart", "NodeCompiling", "NodeExecuting"):
        base._process_dbt_log_event(ti, _event(name))
    base._process_dbt_log_event(ti, _event("NodeFinished", "test"))
    assert ti.pushed == {}
    base._process_dbt_log_event(ti, _event("NodeFinished"))
    assert [v["status"] for v in ti.pushed.values()] == ["success"]


def test_a_changed_cosmos_is_left_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    from cosmos.operators._watcher import base

    monkeypatch.delattr(base, "_process_dbt_log_event")
    assert watcher_events.install() is False
