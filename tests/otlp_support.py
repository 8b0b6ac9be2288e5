"""A real OTLP/HTTP trace receiver on 127.0.0.1 for the traces tests.

It decodes every export request (`ExportTraceServiceRequest`, protobuf, gzip or not) with
the `opentelemetry-proto` package and keeps the spans, with their service's resource.
Waits are on a condition with a deadline: nothing sleeps for synchronisation.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tests.kafka_support import DEADLINE_S


def _plain(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_plain(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None


@dataclass(frozen=True)
class ReceivedSpan:
    name: str
    kind: int  #: the proto's SpanKind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer
    trace_id: str
    span_id: str
    parent_span_id: str  #: "" for a root span
    attributes: dict[str, Any]
    resource: dict[str, Any]
    links: list[tuple[str, str]]  #: (trace id, span id) of each link
    status_code: int  #: 0 unset, 1 ok, 2 error


@dataclass
class OtlpReceiver:
    port: int
    spans: list[ReceivedSpan] = field(default_factory=list)
    requests: int = 0
    changed: threading.Condition = field(default_factory=threading.Condition)

    @property
    def endpoint(self) -> str:
        """For OTEL_EXPORTER_OTLP_ENDPOINT (the exporter appends /v1/traces)."""
        return f"http://127.0.0.1:{self.port}"

    def add(self, body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        received = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _plain(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(
                        ReceivedSpan(
                            name=span.name,
                            kind=span.kind,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            attributes={a.key: _plain(a.value) for a in span.attributes},
                            resource=resource,
                            links=[(k.trace_id.hex(), k.span_id.hex()) for k in span.links],
                            status_code=span.status.code,
                        )
                    )
        with self.changed:
            self.requests += 1
            self.spans.extend(received)
            self.changed.notify_all()

    def wait_for(
        self,
        predicate: Callable[[ReceivedSpan], bool],
        count: int = 1,
        deadline_s: float = DEADLINE_S,
    ) -> list[ReceivedSpan]:
        """Wait until `count` spans satisfy `predicate`; return them."""
        end = time.monotonic() + deadline_s
        with self.changed:
            while True:
                found = [s for s in self.spans if predicate(s)]
                if len(found) >= count:
                    return found
                left = end - time.monotonic()
                if left <= 0:
                    names = sorted({s.name for s in self.spans})
                    raise AssertionError(
                        f"timed out after {deadline_s}s: {len(found)}/{count} matching spans "
                        f"among {len(self.spans)} received ({names})"
                    )
                self.changed.wait(left)


@contextmanager
def otlp_receiver() -> Iterator[OtlpReceiver]:
    """A receiver listening on a free port of 127.0.0.1 until the block ends."""
    receiver: OtlpReceiver | None = None

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            if self.path != "/v1/traces":
                self.send_error(404)
                return
            assert receiver is not None
            receiver.add(body)
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, template: str, *args: Any) -> None:
            pass  # quiet: the test output is the assertions

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver = OtlpReceiver(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, name="otlp-receiver", daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
