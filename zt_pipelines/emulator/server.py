"""The emulator process: one loopback port that speaks both gRPC (HTTP/2) and HTTP/1.1.

Each accepted connection is classified by its first bytes: the HTTP/2 client preface goes to an
internal ``grpc.server`` on an ephemeral loopback port (bytes are relayed as they are), anything
else to the HTTP/1.1 handler. Stopping closes every socket and joins every thread it started.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import selectors
import socket
import struct
import threading
from concurrent import futures
from types import TracebackType
from typing import Any

import grpc

from zt_pipelines.emulator import grpc_api
from zt_pipelines.emulator.artifact_registry import KfpRepositories
from zt_pipelines.emulator.faults import Fault, FaultPlan
from zt_pipelines.emulator.gate import Gate
from zt_pipelines.emulator.http_api import EmulatorHttpHandler
from zt_pipelines.emulator.records import RequestLog, RequestRecord
from zt_pipelines.emulator.run_details import RunScript, StepRun
from zt_pipelines.emulator.world import Authorizer, World
from zt_pipelines.policy.snapshot import Snapshot

_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_CHUNK = 65536


class _Relay:
    """One client connection relayed to the internal gRPC server."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self.reset = threading.Event()


class Emulator:
    """A wire-level stand-in for the Google APIs zt-pipelines uses, serving a snapshot.

    Args:
        snapshot: the IAM world to serve (an empty one if ``None``); writes change a copy.
        host: interface to bind; loopback by default (never expose the emulator).
        port: port to bind; 0 picks a free one (see :attr:`address`).
        latency_ms: added to every call.
        enforce_iam: check each caller's permissions with our engine; without a token the
            call is refused with UNAUTHENTICATED/401.
        project_numbers: project id → number, for projects the snapshot gives no number.
        authorizer: replaces the engine for the emulator's own IAM checks (tests only).
        simulate_runs: end pipeline jobs the way Vertex would once they run: FAILED when the
            run-as SA cannot write the pipeline root or launch a step's CustomJob (create, and
            actAs on the step SA); otherwise SUCCEEDED with one custom job per launched step.
        permission_support: permission → custom-role support level (``SUPPORTED``,
            ``TESTING``, ``NOT_SUPPORTED``) served by ``queryTestablePermissions`` and enforced
            by ``CreateRole``/``UpdateRole``; unnamed permissions keep the catalogue's level
            (``SUPPORTED`` when it has none).

    Use as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        snapshot: Snapshot | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_ms: int = 0,
        enforce_iam: bool = True,
        project_numbers: dict[str, str] | None = None,
        authorizer: Authorizer | None = None,
        simulate_runs: bool = False,
        permission_support: dict[str, str] | None = None,
    ) -> None:
        if latency_ms < 0:
            raise ValueError("latency_ms must not be negative")
        self._world = World(
            snapshot or Snapshot(),
            project_numbers=project_numbers,
            authorizer=authorizer,
            enforce_iam=enforce_iam,
            simulate_runs=simulate_runs,
            permission_support=permission_support,
        )
        self._host = host
        self._requested_port = port
        self._port = 0
        self._log = RequestLog()
        self._faults = FaultPlan()
        self._stopping = threading.Event()
        self._gate = Gate(self._log, self._faults, latency_ms, self._stopping)
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()
        self._sockets: set[socket.socket] = set()
        self._relays: dict[int, _Relay] = {}
        self._listener: socket.socket | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._grpc: grpc.Server | None = None
        self._executor: futures.ThreadPoolExecutor | None = None
        self._grpc_port = 0
        self._acceptor: threading.Thread | None = None
        self._kfp = KfpRepositories()
        handler = type(
            "BoundEmulatorHttpHandler",
            (EmulatorHttpHandler,),
            {"world": self._world, "gate": self._gate, "kfp": self._kfp},
        )
        self._http_handler: type[EmulatorHttpHandler] = handler

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Emulator:
        """Bind, start serving, and return ``self``."""
        if self._acceptor is not None:
            raise RuntimeError("the emulator is already running")
        self._stopping.clear()
        self._executor = futures.ThreadPoolExecutor(
            max_workers=512, thread_name_prefix="zt-emulator-grpc"
        )
        self._grpc = grpc.server(
            self._executor,
            handlers=grpc_api.build_handlers(self._world, self._gate, self._reset_peer),
            options=[("grpc.so_reuseport", 0)],
        )
        self._grpc_port = self._grpc.add_insecure_port("127.0.0.1:0")
        self._grpc.start()
        listener = socket.socket(socket.AF_INET6 if ":" in self._host else socket.AF_INET)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((self._host, self._requested_port))
        except OSError:
            listener.close()
            self._shutdown_grpc()
            raise
        listener.listen(128)
        self._listener = listener
        self._port = listener.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._acceptor = threading.Thread(
            target=self._accept_loop, name="zt-emulator-accept", daemon=True
        )
        self._acceptor.start()
        return self

    def stop(self) -> None:
        """Stop serving: close every connection, join every thread, free the port."""
        if self._acceptor is None:
            return
        self._stopping.set()
        assert self._wake_w is not None
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        self._acceptor.join()
        self._acceptor = None
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join()
        for owned in (self._listener, self._wake_r, self._wake_w):
            if owned is not None:
                owned.close()
        self._listener = None
        self._wake_r = None
        self._wake_w = None
        self._shutdown_grpc()

    def _shutdown_grpc(self) -> None:
        if self._grpc is not None:
            self._grpc.stop(grace=None).wait()
            self._grpc = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- what tests read and control ---------------------------------------------------------

    @property
    def address(self) -> str:
        """``host:port`` of the running emulator — the value for ``ZT_EMULATOR_HOST``."""
        if not self._port:
            raise RuntimeError("the emulator is not running; call start() first")
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{host}:{self._port}"

    @property
    def port(self) -> int:
        """The bound port (0 before :meth:`start`)."""
        return self._port

    @property
    def state(self) -> Snapshot:
        """The served world as a snapshot, with every write applied so far (a copy: changing
        its dicts does not change what the emulator serves)."""
        current = self._world.snapshot()
        return dataclasses.replace(
            current,
            nodes=dict(current.nodes),
            roles=dict(current.roles),
            service_accounts=dict(current.service_accounts),
            groups=dict(current.groups),
        )

    @property
    def request_log(self) -> list[RequestRecord]:
        """Every call so far, oldest first."""
        return self._log.records()

    def counts(self) -> dict[str, int]:
        """Method name → number of calls."""
        return self._log.counts()

    def writes(self) -> list[RequestRecord]:
        """The calls to methods that change state (whatever their status)."""
        return [r for r in self._log.records() if r.write]

    @property
    def in_flight(self) -> int:
        """Calls that have arrived and not yet been answered (e.g. held by a delay fault)."""
        return self._gate.in_flight

    def clear_log(self) -> None:
        """Forget the request log."""
        self._log.clear()

    def add_fault(self, fault: Fault) -> None:
        """Put a scripted fault in force (first added, first matched)."""
        self._faults.add(fault)

    def clear_faults(self) -> None:
        """Remove every scripted fault."""
        self._faults.clear()

    @property
    def latency_ms(self) -> int:
        """Latency added to every call."""
        return self._gate.latency_ms

    @latency_ms.setter
    def latency_ms(self, value: int) -> None:
        if value < 0:
            raise ValueError("latency_ms must not be negative")
        self._gate.latency_ms = value

    @property
    def pipeline_jobs(self) -> dict[str, dict[str, Any]]:
        """Created pipeline jobs by resource name (``projects/NUMBER/locations/L/pipelineJobs/ID``),
        each exactly as the client sent it."""
        with self._world.lock:
            return {k: dict(v) for k, v in self._world.pipeline_jobs.items()}

    @property
    def custom_jobs(self) -> dict[str, dict[str, Any]]:
        """Created custom jobs by resource name, as served (with ``name`` and ``state``)."""
        with self._world.lock:
            return {k: dict(v) for k, v in self._world.custom_jobs.items()}

    @property
    def schedules(self) -> dict[str, dict[str, Any]]:
        """Created schedules by resource name, as served."""
        with self._world.lock:
            return {k: dict(v) for k, v in self._world.schedules.items()}

    def run_schedule(self, schedule: str) -> str:
        """Fire ``schedule`` (its resource name) once, as Vertex does at its cron time: a
        pipeline job with ``scheduleName`` set, simulated to its end; the job's name."""
        from zt_pipelines.emulator.http_api import start_scheduled_run

        return start_scheduled_run(self._world, schedule)

    def script_run(self, script: RunScript) -> None:
        """Make simulated runs deviate from their spec (see :class:`RunScript`)."""
        self._world.run_scripts.add(script)

    def clear_run_scripts(self) -> None:
        """Remove every run script."""
        self._world.run_scripts.clear()

    def add_bigquery_connection(
        self,
        project: str,
        location: str,
        connection_id: str,
        account: str,
        *,
        kind: str = "cloud_resource",
    ) -> None:
        """Add a BigQuery connection acting as ``account`` (``kind``: ``cloud_resource``,
        ``cloud_sql`` or ``spark``). The world already has one per connection account its IAM
        state names (``bqcx-NUMBER-XXXX@gcp-sa-bigquery-condel``, location ``us``)."""
        from zt_pipelines.emulator.bq_connection_api import Connection, add_connection

        add_connection(self._world, Connection(project, location, connection_id, account, kind))

    def set_audit_configs(self, project: str, configs: dict[str, tuple[str, ...]]) -> None:
        """Set the IAM ``auditConfigs`` of a project (its id), folder (``folders/F``) or
        organisation (``organizations/O``; inherited below): service (or ``allServices``) →
        enabled log types (``ADMIN_READ``, ``DATA_READ``, ``DATA_WRITE``; ``"DATA_READ exempts
        serviceAccount:E"`` adds E to that type's ``exemptedMembers``); Data Access entries
        are logged only where enabled and not exempted."""
        self._world.log_store.set_audit_configs(project, configs)

    def log_access(
        self,
        principal: str,
        permission: str,
        resource: str,
        *,
        at: datetime.datetime,
        project: str,
        granted: bool = True,
    ) -> None:
        """Write a Cloud Audit Log entry: ``principal`` (an email) used ``permission`` on
        ``resource`` (a full resource name) at ``at`` (e.g. a use outside any run)."""
        self._world.log_store.log_access(
            project=project,
            principal=principal,
            permission=permission,
            resource=resource,
            at=at,
            granted=granted,
        )

    def add_log_sink(
        self,
        parent: str,
        sink_id: str,
        bucket: str,
        *,
        filter: str = "",
        include_children: bool = True,
        disabled: bool = False,
        exclusions: tuple[str, ...] = (),
    ) -> None:
        """Add a Log Router sink on ``parent`` (``organizations/O``, ``folders/F`` or
        ``projects/P``) routing into the log bucket ``bucket``
        (``projects/P/locations/L/buckets/B``), as ``gcloud logging sinks create`` does;
        ``exclusions`` are exclusion filters."""
        from google.cloud.logging_v2.types import logging_config

        sink = logging_config.LogSink.pb()(
            name=sink_id,
            destination=f"logging.googleapis.com/{bucket}",
            filter=filter,
            include_children=include_children,
            disabled=disabled,
        )
        for index, text in enumerate(exclusions):
            sink.exclusions.add(name=f"exclusion-{index}", filter=text)
        self._world.log_store.add_sink(parent, sink)

    def add_log_view(self, view: str, *, filter: str = "") -> None:
        """Add a log view ``projects/P/locations/L/buckets/B/views/V`` over its bucket."""
        from google.cloud.logging_v2.types import logging_config

        self._world.log_store.add_view(logging_config.LogView.pb()(name=view, filter=filter))

    def add_log_entries(self, entries: Any) -> None:
        """Add prepared ``(timestamp, principal, log name, LogEntry)`` entries (benchmarks)."""
        self._world.log_store.add_entries(entries)

    @property
    def step_runs(self) -> list[StepRun]:
        """Every step job simulated runs created, oldest first."""
        with self._world.lock:
            return list(self._world.step_runs)

    def add_kfp_template(
        self,
        template: bytes | str,
        *,
        project: str,
        repository: str,
        package: str,
        region: str = "us-central1",
        tags: tuple[str, ...] = ("latest",),
    ) -> str:
        """Serve ``template`` from the Artifact Registry KFP repository
        ``https://REGION-kfp.pkg.dev/PROJECT/REPOSITORY`` as a new version of ``package``
        (``tags`` point at it); return the version URL."""
        data = template.encode() if isinstance(template, str) else template
        version = self._kfp.add(region, project, repository, package, data, tags)
        return f"https://{region}-kfp.pkg.dev/{project}/{repository}/{package}/{version}"

    @property
    def objects(self) -> dict[tuple[str, str], bytes]:
        """Uploaded objects: (bucket, object name) → bytes."""
        with self._world.lock:
            return {k: v[0] for k, v in self._world.objects.items()}

    # -- connections -------------------------------------------------------------------------

    def _spawn(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=self._run_tracked, args=(target, *args), daemon=True)
        thread.name = "zt-emulator-conn"
        with self._lock:
            self._threads.add(thread)
        thread.start()

    def _run_tracked(self, target: Any, *args: Any) -> None:
        try:
            target(*args)
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _untrack(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)
        with contextlib.suppress(OSError):
            sock.close()

    def _accept_loop(self) -> None:
        assert self._listener is not None and self._wake_r is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while not self._stopping.is_set():
                for key, _ in selector.select():
                    if key.fileobj is self._wake_r:
                        return
                    try:
                        client, address = self._listener.accept()
                    except OSError:
                        continue
                    if self._stopping.is_set():
                        client.close()
                        return
                    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    self._track(client)
                    self._spawn(self._serve, client, address)

    def _serve(self, client: socket.socket, address: Any) -> None:
        try:
            head = self._peek(client)
            if head is None:
                return
            if head.startswith(_H2_PREFACE[: len(head)]) and head[:3] == b"PRI":
                self._relay(client)
            else:
                self._http_handler(client, address, self)  # type: ignore[arg-type]
        except OSError:
            pass
        finally:
            self._untrack(client)

    def _peek(self, client: socket.socket) -> bytes | None:
        """The first bytes of a connection, without consuming them (``None``: it closed)."""
        while True:
            data = client.recv(len(_H2_PREFACE), socket.MSG_PEEK)
            if not data:
                return None
            # enough to tell HTTP/2 from HTTP/1.1: a mismatch, or the whole preface
            if len(data) >= len(_H2_PREFACE) or not _H2_PREFACE.startswith(data):
                return data
            if len(data) >= 3:
                return data
            # "P" or "PR" could start either protocol: wait for more bytes without spinning
            if self._stopping.wait(0.005):
                return None

    def _relay(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self._grpc_port))
        upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._track(upstream)
        local_port = upstream.getsockname()[1]
        relay = _Relay(client, upstream)
        with self._lock:
            self._relays[local_port] = relay
        try:
            self._pump(relay)
        finally:
            with self._lock:
                self._relays.pop(local_port, None)
            self._untrack(upstream)

    def _pump(self, relay: _Relay) -> None:
        pairs = {relay.client: relay.upstream, relay.upstream: relay.client}
        with selectors.DefaultSelector() as selector:
            selector.register(relay.client, selectors.EVENT_READ)
            selector.register(relay.upstream, selectors.EVENT_READ)
            while True:
                for key, _ in selector.select():
                    if relay.reset.is_set():
                        # SO_LINGER 0: close() sends a TCP RST to the client
                        relay.client.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
                        return
                    source: socket.socket = key.fileobj  # type: ignore[assignment]
                    data = source.recv(_CHUNK)
                    if not data:
                        return
                    pairs[source].sendall(data)

    def _reset_peer(self, peer: str) -> None:
        """Reset the client connection whose relay reached gRPC from ``peer`` (ipv4:H:PORT)."""
        try:
            port = int(peer.rsplit(":", 1)[1])
        except (IndexError, ValueError):
            return
        with self._lock:
            relay = self._relays.get(port)
        if relay is not None:
            relay.reset.set()
