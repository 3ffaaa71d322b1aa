"""An OpenAI-compatible Batch API that runs inside this process, so the demo's batches go through the
real ``flush`` → ``poll`` → handler cycle, and the real ``openai`` SDK, with nothing leaving the machine.

The SDK client of :class:`OfflineBatchProvider` talks to a server on the loopback interface (a port
the system picks, in a thread of this process) that serves the Files and Batches endpoints from
memory: a batch is ``validating`` when created and ``completed`` the first time it is retrieved, every
line answered the way the demo's offline models answer (``offline_models.answer_text``: the input
echoed, but for the terse small model; tokens = characters ÷ 4). Name
it in the settings::

    LLM_AGENTS = {"PROVIDERS": {..., "offline_batches": "example_project.demo.offline_batch_api.OfflineBatchProvider"},
                  "BATCH_PROVIDER": "offline_batches"}

Batches live as long as the process: flush and poll in the same process (the ``demo`` command does).
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import openai

from llm_agents.providers.fake import estimate_tokens

from .offline_models import OfflineModels, answer_text


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"

    @classmethod
    def json(cls, status: int, data: Any) -> Response:
        return cls(status, json.dumps(data).encode())


class OfflineBatchAPI:
    """The Files (upload, content, delete) and Batches (create, retrieve, cancel) endpoints, in memory."""

    def __init__(self) -> None:
        self.files: dict[str, dict[str, Any]] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._routes = [
            ("POST", re.compile(r"/v1/files$"), self.upload),
            ("GET", re.compile(r"/v1/files/(?P<id>[^/]+)/content$"), self.content),
            ("DELETE", re.compile(r"/v1/files/(?P<id>[^/]+)$"), self.delete_file),
            ("POST", re.compile(r"/v1/batches$"), self.create),
            ("GET", re.compile(r"/v1/batches/(?P<id>[^/]+)$"), self.retrieve),
            ("POST", re.compile(r"/v1/batches/(?P<id>[^/]+)/cancel$"), self.cancel),
        ]

    def handle(self, request: Request) -> Response:
        """Answer one SDK request."""
        for method, pattern, view in self._routes:
            match = pattern.search(request.path)
            if match and request.method == method:
                with self._lock:
                    return view(request, **match.groupdict())
        return error(404, f"No route for {request.method} {request.path}.")

    def new_id(self, prefix: str) -> str:
        """A new id, unique across runs (the batches of an earlier run stay in the database)."""
        return f"{prefix}_offline_{uuid.uuid4().hex[:20]}"

    def upload(self, request: Request) -> Response:
        header = f"Content-Type: {request.headers.get('content-type', '')}\r\n\r\n".encode()
        message = BytesParser(policy=HTTP).parsebytes(header + request.body)
        parts = {part.get_param("name", header="content-disposition"): part for part in message.iter_parts()}
        if "file" not in parts:
            return error(400, "No file was uploaded.")
        content = parts["file"].get_payload(decode=True)
        purpose = parts["purpose"].get_payload(decode=True).decode() if "purpose" in parts else "batch"
        filename = parts["file"].get_filename() or "input.jsonl"
        return Response.json(200, self.new_file(content, filename, purpose))

    def new_file(self, content: bytes, filename: str, purpose: str) -> dict[str, Any]:
        record = {"id": self.new_id("file"), "object": "file", "bytes": len(content), "filename": filename,
                  "created_at": int(time.time()), "purpose": purpose, "status": "processed"}  # fmt: skip
        self.files[record["id"]] = {**record, "content": content}
        return record

    def content(self, request: Request, id: str) -> Response:
        if id not in self.files:
            return error(404, "No such file.")
        return Response(200, self.files[id]["content"], "application/octet-stream")

    def delete_file(self, request: Request, id: str) -> Response:
        deleted = self.files.pop(id, None) is not None
        return Response.json(200, {"id": id, "object": "file", "deleted": deleted})

    def create(self, request: Request) -> Response:
        payload = json.loads(request.body)
        input_file = self.files.get(payload.get("input_file_id"))
        if input_file is None:
            return error(400, "No such input file.")
        now = int(time.time())
        batch = {
            "id": self.new_id("batch"), "object": "batch", "endpoint": payload["endpoint"], "errors": None,
            "input_file_id": input_file["id"], "completion_window": payload["completion_window"],
            "status": "validating", "output_file_id": None, "error_file_id": None, "created_at": now,
            "in_progress_at": None, "expires_at": now + 86400, "completed_at": None, "failed_at": None,
            "expired_at": None, "cancelling_at": None, "cancelled_at": None, "metadata": payload.get("metadata"),
            "request_counts": {"total": input_file["content"].count(b"\n"), "completed": 0, "failed": 0},
        }  # fmt: skip
        self.batches[batch["id"]] = batch
        return Response.json(200, batch)

    def retrieve(self, request: Request, id: str) -> Response:
        batch = self.batches.get(id)
        if batch is None:
            return error(404, "No such batch.")
        if batch["status"] == "validating":
            self.complete(batch)
        return Response.json(200, batch)

    def cancel(self, request: Request, id: str) -> Response:
        batch = self.batches.get(id)
        if batch is None:
            return error(404, "No such batch.")
        if batch["status"] == "validating":
            batch.update(status="cancelled", cancelled_at=int(time.time()))
        return Response.json(200, batch)

    def complete(self, batch: dict[str, Any]) -> None:
        """Answer every line of the batch's input file into an output file."""
        lines = self.files[batch["input_file_id"]]["content"].decode().splitlines()
        requests = [json.loads(line) for line in lines if line.strip()]
        output = "".join(json.dumps(answer_line(request)) + "\n" for request in requests).encode()
        now = int(time.time())
        batch.update(
            status="completed", in_progress_at=now, completed_at=now,
            output_file_id=self.new_file(output, "output.jsonl", "batch_output")["id"],
            request_counts={"total": len(requests), "completed": len(requests), "failed": 0},
        )  # fmt: skip


def answer_line(request: dict[str, Any]) -> dict[str, Any]:
    """The output line for one input line: a Responses API (or chat completion) answer to the input, as
    the offline model it names answers it."""
    body = request["body"]
    given = body.get("input", body.get("messages"))
    asked = given if isinstance(given, str) else str((given or [{}])[-1].get("content", ""))
    text = answer_text(body["model"], asked)
    prompt = (body.get("instructions") or "") + asked
    input_tokens, output_tokens = estimate_tokens(prompt), estimate_tokens(text)
    if request["url"] == "/v1/chat/completions":
        answer = {
            "id": f"chatcmpl-{request['custom_id']}", "object": "chat.completion", "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": input_tokens, "completion_tokens": output_tokens,
                      "total_tokens": input_tokens + output_tokens},
        }  # fmt: skip
    else:
        answer = {
            "id": f"resp_{request['custom_id']}", "object": "response", "status": "completed",
            "model": body["model"], "incomplete_details": None,
            "output": [{"type": "message", "role": "assistant", "status": "completed",
                        "content": [{"type": "output_text", "text": text, "annotations": []}]}],
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens,
                      "total_tokens": input_tokens + output_tokens},
        }  # fmt: skip
    response = {"status_code": 200, "request_id": f"req_{request['custom_id']}", "body": answer}
    return {
        "id": f"batch_req_{request['custom_id']}",
        "custom_id": request["custom_id"],
        "response": response,
    }


def error(status: int, message: str) -> Response:
    return Response.json(status, {"error": {"message": message, "type": "invalid_request_error"}})


def serve(api: OfflineBatchAPI) -> ThreadingHTTPServer:
    """Serve ``api`` on 127.0.0.1 (a free port) from a daemon thread."""

    class Handler(BaseHTTPRequestHandler):
        def answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            headers = {key.lower(): value for key, value in self.headers.items()}
            request = Request(self.command, self.path.split("?")[0], headers, self.rfile.read(length))
            response = api.handle(request)
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            self.wfile.write(response.body)

        do_GET = do_POST = do_DELETE = answer

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the demo's output is its own."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="offline-batch-api", daemon=True).start()
    return server


class OfflineBatchProvider(OfflineModels):
    """The demo's offline models, with an ``openai`` SDK ``client`` whose Batch API is :class:`OfflineBatchAPI`."""

    name = "offline_batches"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.batch_api = OfflineBatchAPI()
        self.server = serve(self.batch_api)
        host, port = self.server.server_address[:2]
        self.client = openai.OpenAI(api_key="offline", base_url=f"http://{host}:{port}/v1", max_retries=0)
