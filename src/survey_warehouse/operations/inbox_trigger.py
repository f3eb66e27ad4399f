"""The inbox's Airflow event trigger, for an `AssetWatcher` (run by `airflow triggerer`); see
survey_warehouse.operations.inbox.

Imported when the DAG file is parsed: it imports nothing heavy.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from survey_warehouse.operations.inbox import (
    DEFAULT_POLL_SECONDS,
    DEFAULT_REANNOUNCE_SECONDS,
    DEFAULT_SETTLE_SECONDS,
    InboxWatch,
    scan,
    shown_name,
)


class InboxTrigger(BaseEventTrigger):
    """Fires an event for each entry dropped into <directory>/<wave year>/ (a wave's file; or a link, a folder...,
    for its run to reject), once it has stopped changing. Only looks (lstat): it never follows, opens or moves.

    The provider's file triggers delete the file they find (FileDeleteTrigger, DirectoryFileDeleteTrigger) or
    fire once (FileTrigger); a delivery must stay where it is until its run takes it."""

    def __init__(
        self,
        directory: str,
        poll_seconds: float = DEFAULT_POLL_SECONDS,
        settle_seconds: float = DEFAULT_SETTLE_SECONDS,
        reannounce_seconds: float = DEFAULT_REANNOUNCE_SECONDS,
    ) -> None:
        super().__init__()
        self.directory = directory
        self.poll_seconds = poll_seconds
        self.settle_seconds = settle_seconds
        self.reannounce_seconds = reannounce_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "directory": self.directory,
                "poll_seconds": self.poll_seconds,
                "settle_seconds": self.settle_seconds,
                "reannounce_seconds": self.reannounce_seconds,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        watch = InboxWatch(self.settle_seconds, self.reannounce_seconds)
        inbox = Path(self.directory)
        self.log.info("Watching %s/<wave year>/ for deliveries", inbox)
        while True:
            deliveries = await asyncio.to_thread(scan, inbox)
            delivery = watch.observe(deliveries, time.monotonic())
            if delivery is not None:
                self.log.info(
                    "Delivery for wave %s: %s (a %s, %d bytes)",
                    delivery.wave_year,
                    shown_name(delivery.path),
                    delivery.kind,
                    delivery.size,
                )
                yield TriggerEvent(delivery.payload())
            await asyncio.sleep(self.poll_seconds)


def inbox_asset() -> Any:
    """The inbox as an Airflow asset, watched by an InboxTrigger: a delivery is an event of this asset."""
    import os

    from airflow.sdk import Asset, AssetWatcher

    from survey_warehouse.operations.inbox import INBOX_ASSET_NAME, inbox_dir

    directory = inbox_dir().resolve()
    trigger = InboxTrigger(
        directory=str(directory),
        poll_seconds=float(os.environ.get("SURVEY_INBOX_POLL_SECONDS", DEFAULT_POLL_SECONDS)),
        settle_seconds=float(os.environ.get("SURVEY_INBOX_SETTLE_SECONDS", DEFAULT_SETTLE_SECONDS)),
    )
    return Asset(
        name=INBOX_ASSET_NAME,
        uri=directory.as_uri(),
        watchers=[AssetWatcher(name=f"{INBOX_ASSET_NAME}_watcher", trigger=trigger)],
    )
