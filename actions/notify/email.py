"""email: a message over SMTP (upstream keys: `user`, `password`, `host`, `port`,
`sender`, `recipients`, `use-mx`, `client-host-name`).

STARTTLS is used whenever the server offers it (port 465 speaks TLS from the start), and
AUTH when `user` and `password` are given; `tls-verify: false` accepts a certificate that
does not verify. With `use-mx: true` the message goes to each recipient domain's MX hosts
(by preference, on `port`, default 25) instead of `host`. The recipient
`<%application_scope_owner%>` stands for the event's `application_scope_owners` (Aqua).

The message is `multipart/alternative`: a text part and an HTML part (HTML from an HTML
template as it is, else built from the Markdown-ish text, escaped). Its `Message-ID` is
derived from the command id, so a retried delivery is recognisably the same message.
Connection failures, timeouts and 4xx replies are temporary; 5xx replies are final.
"""

from __future__ import annotations

import email.message
import email.utils
from collections.abc import Mapping, Sequence
from typing import Any

import aiosmtplib
import dns.asyncresolver
import dns.exception
import dns.resolver

from actions.base import (
    Action,
    ActionPermanentError,
    ActionRequest,
    ActionResult,
    ActionTemporaryError,
)
from actions.notify import shape
from actions.notify.owners import recipients_of

__all__ = ["EmailAction", "build_message"]

DEFAULT_PORT = 25
IMPLICIT_TLS_PORT = 465


class EmailAction(Action):
    type = "email"
    timeout_s = 60.0
    max_attempts = 4
    fits = frozenset({"html", "text"})

    async def execute(self, request: ActionRequest) -> ActionResult:
        params = request.params
        recipients = recipients_of(params, request.event)
        if not recipients:
            raise ActionPermanentError("no recipient: recipients gave no address for this event")
        message = build_message(request, recipients)
        detail: dict[str, Any] = {
            "recipients": recipients,
            "subject": message["Subject"],
            "message_id": message["Message-ID"],
            "request_bytes": len(message.as_bytes()),
        }
        if request.dry_run:
            via = "mx" if params.get("use-mx") else f"{params.get('host')}:{_port(params)}"
            return ActionResult("dry_run", {**detail, "via": via})
        if params.get("use-mx"):
            servers = await self._mx_servers(recipients)
        else:
            servers = {str(params["host"]): recipients}
        for host, group in servers.items():
            refused = await _send(request, host, message, group, relay=not params.get("use-mx"))
            detail.setdefault("servers", []).append(host)
            if refused:
                detail["refused"] = refused
        if detail.get("refused") and len(detail["refused"]) == len(recipients):
            return ActionResult("failed", detail, "every recipient was refused")
        return ActionResult("succeeded", detail)

    async def _mx_servers(self, recipients: Sequence[str]) -> dict[str, list[str]]:
        """Each domain's best MX host, and the recipients it takes."""
        servers: dict[str, list[str]] = {}
        for recipient in recipients:
            domain = recipient.rpartition("@")[2]
            if not domain:
                raise ActionPermanentError(f"{recipient!r} is not an email address")
            servers.setdefault(await mx_host(domain), []).append(recipient)
        return servers


async def mx_host(domain: str) -> str:
    try:
        answer = await dns.asyncresolver.resolve(domain, "MX")
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer) as exc:
        raise ActionPermanentError(f"no MX record for {domain}: {exc}") from None
    except dns.exception.DNSException as exc:
        raise ActionTemporaryError(f"MX lookup of {domain} failed: {exc}") from None
    best = min(answer, key=lambda record: record.preference)
    return str(best.exchange).rstrip(".")


def build_message(request: ActionRequest, recipients: Sequence[str]) -> email.message.EmailMessage:
    params = request.params
    template = request.template or {}
    title = str(template.get("title") or "Postee notification")
    description = request.event_text
    kind = shape.detect(description)
    text = shape.to_text(description)
    body = description if kind == "html" else shape.md_to_html(text, title)
    message = email.message.EmailMessage()
    message["Subject"] = " ".join(title.split())
    message["From"] = str(params.get("sender") or params.get("user") or "postee@localhost")
    message["To"] = ", ".join(recipients)
    message["Date"] = email.utils.formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = f"<{request.command_id}@postee-streams>"
    message["X-Postee-Event-Id"] = request.event_id
    message.set_content(text)
    message.add_alternative(body, subtype="html")
    return message


def _port(params: Mapping[str, Any]) -> int:
    return int(params.get("port") or DEFAULT_PORT)


async def _send(
    request: ActionRequest,
    host: str,
    message: email.message.EmailMessage,
    to: Sequence[str],
    relay: bool,
) -> dict[str, str]:
    """Deliver to one server (AUTH only when it is our relay, not a recipient's MX, as
    upstream); the recipients it refused (when it took the others)."""
    params = request.params
    port = _port(params)
    user, password = (params.get("user"), params.get("password")) if relay else (None, None)
    client = aiosmtplib.SMTP(
        hostname=host,
        port=port,
        username=str(user) if user and password else None,
        password=str(password) if user and password else None,
        local_hostname=params.get("client-host-name"),
        timeout=request.timeout_s,
        use_tls=port == IMPLICIT_TLS_PORT,
        start_tls=None if port != IMPLICIT_TLS_PORT else False,
        validate_certs=bool(params.get("tls-verify", True)),
    )
    where = f"SMTP {host}:{port}"
    sender = str(message["From"])
    try:
        async with client:
            refused, _ = await client.send_message(message, sender=sender, recipients=list(to))
    except aiosmtplib.SMTPAuthenticationError as exc:
        raise ActionPermanentError(
            f"{where}: authentication failed: {exc.code} {exc.message}"
        ) from None
    except aiosmtplib.SMTPRecipientsRefused as exc:
        codes = [r.code for r in exc.recipients]
        reason = f"{where}: every recipient refused: " + "; ".join(str(r) for r in exc.recipients)
        if all(400 <= c < 500 for c in codes):
            raise ActionTemporaryError(reason) from None
        raise ActionPermanentError(reason) from None
    except aiosmtplib.SMTPResponseException as exc:
        reason = f"{where}: {exc.code} {exc.message}"
        if 400 <= exc.code < 500:
            raise ActionTemporaryError(reason) from None
        raise ActionPermanentError(reason) from None
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        raise ActionTemporaryError(f"{where}: {type(exc).__name__}: {exc}") from None
    return {address: f"{code} {text}" for address, (code, text) in refused.items()}
