"""The inbox's trigger under its former module path: Airflow keeps a trigger's classpath in its database, so a
deployment that watched the inbox before the package was arranged by stage names
`survey_warehouse.inbox_trigger.InboxTrigger` until its DAGs are parsed again. The code is in
`survey_warehouse.operations.inbox_trigger`."""

from survey_warehouse.operations.inbox_trigger import InboxTrigger, inbox_asset

__all__ = ["InboxTrigger", "inbox_asset"]
