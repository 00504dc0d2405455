"""A local stand-in for W&B's server that records every GraphQL call (point `WANDB_BASE_URL`
at it).

It answers what W&B's own client asks while it registers a sweep and runs runs online
(`Viewer`, `UpsertSweep`, `RunResumeStatus`, `UpsertBucket`, `CreateRunFiles`, the file stream
and file uploads) with the smallest answers the client accepts; anything else gets empty data.
The calls are checked as the client sent them, so nothing of the code under test is mocked.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: The id this server gives every sweep it registers.
SWEEP_ID = "swp4test"
ENTITY = "team"


@dataclass(frozen=True)
class Call:
    """One GraphQL request: the mutation or query's field (`upsertSweep`) and its variables."""

    field: str
    variables: dict[str, Any]


class FakeWandb:
    """The server, on 127.0.0.1 and a free port, serving on a thread while the `with` lasts."""

    def __init__(self, fail_after: int | None = None) -> None:
        """Args:
        fail_after: Answer this many requests, then HTTP 500 to every one (an outage).
        """
        self.calls: list[Call] = []
        self.requests = 0
        self.fail_after = fail_after
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return None

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if owner.failing():
                    self._fail()
                elif self.path.startswith("/graphql"):
                    request = json.loads(body)
                    self._reply(owner.answer(request["query"], request.get("variables") or {}))
                else:  # the file stream
                    self._reply({"exitcode": None, "limits": {}})

            def do_PUT(self) -> None:  # a file upload to the URL CreateRunFiles gave
                self.rfile.read(int(self.headers.get("content-length", 0)))
                self._fail() if owner.failing() else self._reply({})

            def _fail(self) -> None:
                self.send_response(500)
                self.send_header("content-length", "0")
                self.end_headers()

            def _reply(self, payload: dict[str, Any]) -> None:
                out = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeWandb:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def failing(self) -> bool:
        """Counts a request; True once the outage has begun."""
        with self._lock:
            self.requests += 1
            return self.fail_after is not None and self.requests > self.fail_after

    def of(self, field: str) -> list[Call]:
        """The calls of one GraphQL field, in the order they came."""
        with self._lock:
            return [c for c in self.calls if c.field == field]

    def answer(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        fields = ("upsertSweep", "upsertBucket", "createRunFiles", "viewer", "model")
        field = next((f for f in fields if f + "(" in query or f + " {" in query), "other")
        with self._lock:
            self.calls.append(Call(field, variables))
        project = {"id": "UHJvamVjdA==", "name": "p", "entity": {"id": "RW50", "name": ENTITY}}
        if field == "upsertSweep":
            project["name"] = variables.get("projectName") or "uncategorized"
            sweep = {"name": SWEEP_ID, "project": project}
            return {"data": {"upsertSweep": {"sweep": sweep, "configValidationWarnings": []}}}
        if field == "upsertBucket":
            project["name"] = variables.get("project") or "uncategorized"
            bucket = {
                "id": "QnVja2V0",
                "name": variables.get("name"),
                "displayName": variables.get("displayName"),
                "description": None,
                "config": "{}",
                "sweepName": variables.get("sweep"),
                "historyLineCount": 0,
                "project": project,
            }
            return {"data": {"upsertBucket": {"bucket": bucket, "inserted": True}}}
        if field == "createRunFiles":
            files = [{"name": f, "uploadUrl": f"{self.url}/upload/{f}"} for f in variables["files"]]
            return {
                "data": {"createRunFiles": {"runID": "UnVu", "uploadHeaders": [], "files": files}}
            }
        if field == "viewer":
            viewer = {
                "id": "VXNlcg==",
                "entity": ENTITY,
                "username": ENTITY,
                "teams": {"edges": []},
            }
            return {"data": {"viewer": viewer}}
        return {"data": {"model": None} if field == "model" else {}}


class SilentServer:
    """Accepts connections on 127.0.0.1 and a free port, reads, and never answers."""

    def __init__(self) -> None:
        import socket

        self._socket = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        self._held: list[Any] = []
        self._open = True

    def _accept(self) -> None:
        while self._open:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            self._held.append(connection)  # held open, never read to the end, never answered

    def __enter__(self) -> SilentServer:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._open = False
        self._socket.close()
        for connection in self._held:
            connection.close()
