"""A real SMTP server on a free local port, for the tests of what the wave's owner is sent."""

from __future__ import annotations

import email
import html
import json
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message

import pytest

OWNER = "kysely.omistaja@example.fi"
SENDER = "survey-warehouse@example.fi"


@dataclass
class Received:
    sender: str
    recipients: list[str]
    message: Message
    raw: str = ""

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def text(self) -> str:
        """The body as the owner reads it: the HTML part without its markup."""
        part = next(p for p in self.message.walk() if p.get_content_type() == "text/html")
        return html.unescape(re.sub(r"<[^>]+>", "", part.get_payload(decode=True).decode("utf-8")))


@dataclass
class Mailbox:
    port: int
    received: list[Received] = field(default_factory=list)

    async def handle_DATA(self, server, session, envelope) -> str:
        raw = envelope.content.decode("utf-8", errors="replace")
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), email.message_from_string(raw), raw))
        return "250 OK"

    def connection(self) -> str:
        """AIRFLOW_CONN_SMTP_DEFAULT for this server (plain SMTP on localhost, no retries)."""
        extra = {"from_email": SENDER, "disable_ssl": True, "disable_tls": True, "retry_limit": 0, "timeout": 10}
        return json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": self.port, "extra": extra})


@contextmanager
def smtp_mailbox() -> Iterator[Mailbox]:
    """The server, with Airflow's smtp_default connection pointing at it (for the runs started meanwhile)."""
    from aiosmtpd.controller import Controller

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    box = Mailbox(port)
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", box.connection())
            yield box
    finally:
        controller.stop()


def assert_no_personal_data(mail: Received, personal: set[str]) -> None:
    text = mail.subject + "\n" + mail.text + "\n" + mail.raw
    leaked = sorted(v for v in personal if v in text)
    assert not leaked, f"personal data in the message: {leaked[:3]}"
    assert not [a for a in re.findall(r"[\w.+-]+@[\w-]+\.[\w.]+", mail.text) if a not in (OWNER, SENDER)]


def personal_data(lines: list[str]) -> set[str]:
    """Every respondent name and e-mail address a wave file holds (2019: columns Nimi and Email)."""
    import csv

    rows = list(csv.DictReader(lines))
    found = {r[c].strip() for r in rows for c in ("Nimi", "Email") if r.get(c) and r[c].strip()}
    assert len(found) > 40, "the file's names and addresses were read"
    return found
