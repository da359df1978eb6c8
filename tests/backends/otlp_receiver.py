"""Real OTLP endpoints on loopback, for the export tests: what the OpenTelemetry exporters send,
decoded with the OTLP protobuf definitions (``opentelemetry-proto``), plus two broken endpoints.

- ``OtlpHttpReceiver``: OTLP/HTTP (``POST /v1/traces``, ``/v1/metrics``, ``/v1/logs``, protobuf bodies).
- ``OtlpGrpcReceiver``: OTLP/gRPC (the TraceService and MetricsService of the OTLP spec).
- ``BlackHole``: accepts TCP connections and reads, and never answers (a hung collector).
- ``closed_port()``: a port nothing listens on (connection refused at once).
"""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List

from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as logs_pb
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as metrics_pb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as trace_pb


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in any_value.array_value.values]
    if kind == "kvlist_value":
        return attributes(any_value.kvlist_value.values)
    return getattr(any_value, kind) if kind else None


def attributes(kvs: Any) -> Dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in kvs}


class Received:
    """What one receiver got: decoded spans and metric names, with resource attributes and headers."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.spans: List[Dict[str, Any]] = []
        self.metrics: List[Dict[str, Any]] = []
        self.logs: List[Dict[str, Any]] = []
        self.headers: List[Dict[str, str]] = []
        self.arrived = threading.Event()

    def add_traces(self, request: Any, headers: Dict[str, str]) -> None:
        with self.lock:
            self.headers.append(headers)
            for rs in request.resource_spans:
                resource = attributes(rs.resource.attributes)
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        self.spans.append({"name": span.name, "attributes": attributes(span.attributes), "resource": resource,
                                           "scope": ss.scope.name, "kind": span.kind,
                                           "trace_id": span.trace_id.hex(), "span_id": span.span_id.hex()})
        self.arrived.set()

    def add_metrics(self, request: Any, headers: Dict[str, str]) -> None:
        with self.lock:
            self.headers.append(headers)
            for rm in request.resource_metrics:
                resource = attributes(rm.resource.attributes)
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        self.metrics.append({"name": metric.name, "unit": metric.unit, "resource": resource, "scope": sm.scope.name})
        self.arrived.set()

    def add_logs(self, request: Any, headers: Dict[str, str]) -> None:
        with self.lock:
            self.headers.append(headers)
            for rl in request.resource_logs:
                for sl in rl.scope_logs:
                    for record in sl.log_records:
                        self.logs.append({"event_name": record.event_name, "attributes": attributes(record.attributes),
                                          "body": _value(record.body), "scope": sl.scope.name,
                                          "trace_id": record.trace_id.hex(), "span_id": record.span_id.hex()})
        self.arrived.set()

    def metric_names(self) -> set:
        with self.lock:
            return {m["name"] for m in self.metrics}


class OtlpHttpReceiver:
    def __init__(self) -> None:
        self.received = Received()
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                if self.path == "/v1/traces":
                    request = trace_pb.ExportTraceServiceRequest()
                    request.ParseFromString(body)
                    received.add_traces(request, headers)
                    reply = trace_pb.ExportTraceServiceResponse().SerializeToString()
                elif self.path == "/v1/metrics":
                    request = metrics_pb.ExportMetricsServiceRequest()
                    request.ParseFromString(body)
                    received.add_metrics(request, headers)
                    reply = metrics_pb.ExportMetricsServiceResponse().SerializeToString()
                elif self.path == "/v1/logs":
                    request = logs_pb.ExportLogsServiceRequest()
                    request.ParseFromString(body)
                    received.add_logs(request, headers)
                    reply = logs_pb.ExportLogsServiceResponse().SerializeToString()
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "OtlpHttpReceiver":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


class OtlpGrpcReceiver:
    def __init__(self) -> None:
        from concurrent import futures

        import grpc
        from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as metrics_grpc
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as trace_grpc

        self.received = received = Received()

        class Traces(trace_grpc.TraceServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC's naming
                received.add_traces(request, dict(context.invocation_metadata()))
                return trace_pb.ExportTraceServiceResponse()

        class Metrics(metrics_grpc.MetricsServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:  # noqa: N802
                received.add_metrics(request, dict(context.invocation_metadata()))
                return metrics_pb.ExportMetricsServiceResponse()

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_grpc.add_TraceServiceServicer_to_server(Traces(), self.server)
        metrics_grpc.add_MetricsServiceServicer_to_server(Metrics(), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "OtlpGrpcReceiver":
        self.server.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.stop(grace=None)


class BlackHole:
    """Accepts connections and reads whatever arrives, never answering, until closed."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.connections: List[socket.socket] = []
        self.bytes_received = 0
        self.request_arrived = threading.Event()
        self.client_closed = threading.Event()  # a client gave up on a connection (timeout, shutdown)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections.append(conn)
            threading.Thread(target=self._swallow, args=(conn,), daemon=True).start()

    def _swallow(self, conn: socket.socket) -> None:
        while not self._closed.is_set():
            try:
                data = conn.recv(65536)
            except OSError:
                if not self._closed.is_set():
                    self.client_closed.set()
                return
            if not data:
                if not self._closed.is_set():
                    self.client_closed.set()
                return
            self.bytes_received += len(data)
            self.request_arrived.set()

    def __enter__(self) -> "BlackHole":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._closed.set()
        for conn in self.connections:
            try:
                conn.close()
            except OSError:
                pass
        self.sock.close()


def closed_port() -> int:
    """A loopback port with no listener: bound, then closed (connection refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Any, timeout: float = 30.0, interval: float = 0.05) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


