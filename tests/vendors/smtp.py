"""A real SMTP server (aiosmtpd) on 127.0.0.1 that insists on STARTTLS and on AUTH over
TLS, as a submission server on port 587 does, and keeps every message it accepts."""

from __future__ import annotations

import asyncio
import email
import email.policy
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from tests.conftest import self_signed_cert
from tests.kafka_support import free_port
from tests.vendors.base import DEADLINE_S


@dataclass(frozen=True)
class Delivered:
    sender: str
    recipients: list[str]
    message: EmailMessage
    tls: bool
    user: str | None


@dataclass
class MailServer:
    host: str
    port: int
    user: str
    password: str
    received: list[Delivered] = field(default_factory=list)

    async def wait_for(self, count: int = 1, deadline_s: float = DEADLINE_S) -> list[Delivered]:
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline_s
        while len(self.received) < count:
            if loop.time() > end:
                raise AssertionError(
                    f"SMTP: {len(self.received)}/{count} messages in {deadline_s}s"
                )
            await asyncio.sleep(0.02)  # poll interval, bounded by the deadline above
        return self.received


class _Handler:
    def __init__(self, server: MailServer) -> None:
        self.server = server

    async def handle_DATA(self, smtp: Any, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content
        parsed = email.message_from_bytes(bytes(raw), policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        user = session.auth_data.decode() if isinstance(session.auth_data, bytes) else None
        self.server.received.append(
            Delivered(
                str(envelope.mail_from),
                list(envelope.rcpt_tos),
                parsed,
                smtp._tls_protocol is not None,
                user,
            )
        )
        return "250 OK queued"


@contextmanager
def mail_server(
    directory: Path, user: str, password: str, *, submission: bool = True
) -> Iterator[MailServer]:
    """`submission`: STARTTLS and AUTH required (port 587's rules); else an MX that takes
    mail from anyone, TLS offered."""
    cert, key = self_signed_cert(directory)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = MailServer("127.0.0.1", free_port(), user, password)

    def authenticate(
        smtp: Any, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            user.encode(),
            password.encode(),
        )
        return AuthResult(success=ok, handled=False, auth_data=data.login if ok else None)

    controller = Controller(
        _Handler(server),
        hostname=server.host,
        port=server.port,
        tls_context=context,
        require_starttls=submission,
        auth_required=submission,
        auth_require_tls=True,
        authenticator=authenticate,
    )
    controller.start()
    try:
        yield server
    finally:
        controller.stop()
