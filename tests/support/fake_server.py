"""A real, scripted OpenAI-compatible chat server on 127.0.0.1.

Why a real HTTP server and not a mock: the model layer's job is HTTP (headers, retries, status codes,
timeouts), and only a real socket exercises it. Shipped inside the package, like mini-swe-agent's fake model,
because the tests, the benches and users' CI all drive mendloop against it.

Replies are routed by the ``X-Mendloop-Node`` request header: each node has a queue consumed in order, and
once a queue is exhausted its last reply repeats, so a script can say "always this". Node ``"*"`` is the
fallback.

Streaming (``stream: true``): by default the whole answer goes out as one chunk, usage included (what CWM's own
Fastgen server does). A reply with ``chunks`` (a list of content pieces, or a number of near-equal pieces) is sent
piece by piece, ``chunk_delay`` seconds apart, like llama.cpp or vLLM; usage then comes as a last chunk when the
request asks for it (``stream_options.include_usage``), unless the reply says ``"stream_usage": false`` (a server
that never reports usage in a stream).

Holding a stream back (in-process only): a chunked reply with ``hold`` (a ``threading.Event``) sends its first
``hold_after`` content pieces, then waits until the test sets the event - so a test can see the first pieces arrive
before the rest exists, with no timing. The wait is bounded (``hold_timeout``, 120 s by default) so that a client
that never shows the first pieces ends instead of hanging; ``server.held`` tells for each hold whether the event
released it (``True``) or the bound did (``False``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TextIO

from agent.model import NODE_HEADER

__all__ = ["NODE_HEADER", "RecordedRequest", "Reply", "ScriptedServer", "count_tokens", "main"]

Reply = str | dict[str, Any]
"""A str is the assistant content; a dict may hold content, tool_calls, status, headers, body, delay, usage,
finish_reason, and for streamed requests chunks, chunk_delay, stream_usage, hold, hold_after, hold_timeout."""

Script = Mapping[str, Sequence[Reply]] | Callable[["RecordedRequest"], Reply]

_TOKEN_RE = re.compile(r"\w+|[^\w\s]")


def count_tokens(text: str) -> int:
    """A word-ish token count: good enough for budgets in tests, and deterministic."""
    return len(_TOKEN_RE.findall(text))


@dataclass
class RecordedRequest:
    """One request as the server saw it (the Authorization header is never kept)."""

    method: str
    path: str
    node: str | None
    body: Any
    headers: dict[str, str]
    received_at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _prompt_text(body: Any) -> str:
    messages = body.get("messages", []) if isinstance(body, dict) else []
    parts: list[str] = []
    for message in messages if isinstance(messages, list) else []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "\n".join(parts)


def _error_body(message: str, kind: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _tool_calls(raw: Sequence[Mapping[str, Any]], counter: int) -> list[dict[str, Any]]:
    calls = []
    for i, call in enumerate(raw):
        args = call.get("arguments", {})
        calls.append(
            {
                "id": str(call.get("id", f"call_{counter}_{i}")),
                "type": "function",
                "function": {
                    "name": call["name"],
                    "arguments": args if isinstance(args, str) else json.dumps(args),
                },
            }
        )
    return calls


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (a timeout test, a killed run) is normal here, not a traceback on stderr."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class ScriptedServer:
    """A chat-completions server answering from a script; see the module docstring for routing."""

    def __init__(
        self,
        script: Script | None = None,
        *,
        models: Sequence[str] = ("facebook/cwm",),
        latency: float = 0.0,
        log: Path | None = None,
        n_ctx: int | None = 32768,
        refuse_above: int | None = None,
        n_choices: bool = True,
        max_n: int | None = None,
        n_params: int | None = None,
    ) -> None:
        self.n_params = n_params  # the model size /v1/models reports in ``meta``, as llama-server does
        self.max_n = max_n  # refuse a larger ``n`` with llama-server's HTTP 400 (it allows at most its slots)
        self.n_ctx = n_ctx  # what GET /props reports, as llama-server does; None: no /props (404)
        # a prompt longer than this (default: n_ctx) is refused with llama.cpp's HTTP 400 for an exceeded context
        self.refuse_above = refuse_above if refuse_above is not None else n_ctx
        self.n_choices = n_choices  # answer ``n > 1`` with that many choices (llama-server, vLLM), or ignore it
        self.probes: list[str] = []  # GET /props requests: server metadata, kept apart from the requests
        self.held: list[bool] = []  # each held stream: released by its event (True) or by the bound (False)
        self._callable: Callable[[RecordedRequest], Reply] | None = None
        self._queues: dict[str, list[Reply]] = {}
        self._served: dict[str, int] = {}
        if callable(script):
            self._callable = script
        else:
            for node, replies in (script or {}).items():
                self.add(node, *replies)
        self.models = list(models)
        self.latency = latency
        self.requests: list[RecordedRequest] = []
        self._log_path = log
        self._log: TextIO | None = None
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._counter = 0
        self.url = ""

    # --- script --------------------------------------------------------------------------------------------
    def add(self, node: str, *replies: Reply) -> None:
        """Append replies to ``node``'s queue (``"*"`` is the fallback for nodes without a queue)."""
        self._queues.setdefault(node, []).extend(replies)

    def nodes(self) -> list[str]:
        """The node header of each chat request, in order (``""`` when a request had none)."""
        with self._lock:
            return [r.node or "" for r in self.requests if r.path.endswith("/chat/completions")]

    def _next_reply(self, request: RecordedRequest) -> Reply | None:
        if self._callable is not None:
            return self._callable(request)
        node = request.node if request.node in self._queues else "*"
        queue = self._queues.get(node)
        if not queue:
            return None
        with self._lock:
            index = min(self._served.get(node, 0), len(queue) - 1)
            self._served[node] = self._served.get(node, 0) + 1
        return queue[index]

    # --- lifecycle -----------------------------------------------------------------------------------------
    def start(self, port: int = 0) -> ScriptedServer:
        if self._log_path is not None:
            self._log = self._log_path.open("a", encoding="utf-8")
        self._httpd = _HTTPServer(("127.0.0.1", port), _make_handler(self))
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"
        httpd = self._httpd
        self._thread = threading.Thread(
            target=lambda: httpd.serve_forever(poll_interval=0.05), name="scripted-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def serve_forever(self) -> None:
        """Block until interrupted (the CLI's main loop)."""
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- request handling (called from handler threads) ----------------------------------------------------
    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)
            if self._log is not None:
                self._log.write(json.dumps(request.to_dict()) + "\n")
                self._log.flush()

    def _answer_models(self) -> tuple[int, dict[str, str], dict[str, Any]]:
        data: list[dict[str, Any]] = [
            {"id": m, "object": "model", "created": 0, "owned_by": "mendloop"} for m in self.models
        ]
        if self.n_params is not None:
            for entry in data:
                entry["meta"] = {"n_params": self.n_params, "n_ctx_train": self.n_ctx}
        return 200, {}, {"object": "list", "data": data}

    def _answer_chat(self, request: RecordedRequest) -> tuple[int, dict[str, str], dict[str, Any]]:
        return self._answer_chat_spec(request)[:3]

    def _answer_chat_spec(self, request: RecordedRequest) -> tuple[int, dict[str, str], dict[str, Any], dict[str, Any]]:
        """The status, headers and body of the answer, and the reply spec it came from (for streaming)."""
        body = request.body if isinstance(request.body, dict) else {}
        model = str(body.get("model", ""))
        if "*" not in self.models and model not in self.models:
            return (
                404,
                {},
                _error_body(f"The model `{model}` does not exist", "invalid_request_error", "model_not_found"),
                {},
            )
        prompt = count_tokens(_prompt_text(body))
        if self.refuse_above is not None and prompt > self.refuse_above:
            message = (
                f"request ({prompt} tokens) exceeds the available context size ({self.refuse_above} tokens), "
                "try increasing it"
            )
            return 400, {}, _error_body(message, "exceed_context_size_error"), {}
        asked = int(body.get("n") or 1)
        if self.max_n is not None and asked > self.max_n:
            message = f"Field 'n': Value must be between 1 <= value <= {self.max_n}, but got {asked}"
            return 400, {}, _error_body(message, "invalid_request_error"), {}
        reply = self._next_reply(request)
        if reply is None:
            message = f"fake server: no scripted reply for node {request.node!r}"
            return 400, {}, _error_body(message, "invalid_request_error", "no_script"), {}
        spec: dict[str, Any] = {"content": reply} if isinstance(reply, str) else dict(reply)
        if isinstance(spec.get("chunks"), list) and "content" not in spec:
            spec["content"] = "".join(str(piece) for piece in spec["chunks"])
        wanted = int(body.get("n") or 1) if self.n_choices else 1
        extra = [self._next_reply(request) for _ in range(wanted - 1)]
        spec["more"] = [{"content": r} if isinstance(r, str) else dict(r) for r in extra if r is not None]
        delay = float(spec.get("delay", 0.0)) + self.latency
        if delay > 0:
            time.sleep(delay)
        status = int(spec.get("status", 200))
        headers = {str(k): str(v) for k, v in dict(spec.get("headers", {})).items()}
        if "body" in spec:
            return status, headers, spec["body"], spec
        if status != 200:
            kind = "rate_limit_error" if status == 429 else "server_error" if status >= 500 else "invalid_request_error"
            return status, headers, _error_body(f"scripted error {status}", kind), spec
        return status, headers, self._completion(model, body, spec), spec

    def _completion(self, model: str, body: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._counter += 1
            counter = self._counter
        content = spec.get("content")
        calls = _tool_calls(spec.get("tool_calls", []), counter)
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if calls:
            message["tool_calls"] = calls
        completion_text = (content or "") + "".join(c["function"]["name"] + c["function"]["arguments"] for c in calls)
        prompt_tokens = count_tokens(_prompt_text(body))
        completion_tokens = count_tokens(completion_text)
        usage = spec.get("usage") or {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        finish = spec.get("finish_reason") or ("tool_calls" if calls else "stop")
        choices = [{"index": 0, "message": message, "finish_reason": finish}]
        for i, more in enumerate(spec.get("more", []), start=1):
            text = more.get("content")
            choices.append({"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"})
            if not spec.get("usage"):
                usage["completion_tokens"] += count_tokens(text or "")
                usage["total_tokens"] += count_tokens(text or "")
        return {
            "id": f"chatcmpl-{counter}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": choices,
            "usage": usage,
        }


def _as_chunk(completion: dict[str, Any]) -> dict[str, Any]:
    """The whole answer as one streaming chunk (what CWM's own Fastgen server does)."""
    choice = completion["choices"][0]
    delta = dict(choice["message"])
    if "tool_calls" in delta:
        delta["tool_calls"] = [{"index": i, **call} for i, call in enumerate(delta["tool_calls"])]
    return {
        **completion,
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": choice["finish_reason"]}],
    }


def _pieces(content: str, chunks: Any) -> list[str]:
    """The content pieces a reply asks for: its own list, or ``chunks`` near-equal pieces."""
    if isinstance(chunks, list):
        return [str(piece) for piece in chunks]
    count = max(1, min(int(chunks), len(content) or 1))
    size = -(-len(content) // count) if content else 1
    return [content[i : i + size] for i in range(0, len(content), size)] or [""]


def _stream_chunks(completion: dict[str, Any], spec: Mapping[str, Any], include_usage: bool) -> list[dict[str, Any]]:
    """The chunks of a streamed answer (see the module docstring)."""
    usage = spec.get("stream_usage", True) is not False
    if spec.get("chunks") is None:
        whole = _as_chunk(completion)
        if not usage:
            whole.pop("usage", None)
        return [whole]
    choice = completion["choices"][0]
    message = choice["message"]
    head = {k: completion[k] for k in ("id", "created", "model")} | {"object": "chat.completion.chunk"}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    out = [chunk({"role": "assistant", "content": ""})]
    out += [chunk({"content": piece}) for piece in _pieces(message.get("content") or "", spec["chunks"]) if piece]
    if message.get("tool_calls"):
        out.append(chunk({"tool_calls": [{"index": i, **c} for i, c in enumerate(message["tool_calls"])]}))
    out.append(chunk({}, choice["finish_reason"]))
    if include_usage and usage:
        out.append({**head, "choices": [], "usage": completion["usage"]})
    return out


def _make_handler(server: ScriptedServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read server.requests instead
            return

        def _request(self, body: Any) -> RecordedRequest:
            headers = {k: v for k, v in self.headers.items() if k.lower() != "authorization"}
            return RecordedRequest(self.command, self.path, self.headers.get(NODE_HEADER), body, headers)

        def _send_json(self, status: int, headers: Mapping[str, str], payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def _send_stream(self, payload: dict[str, Any], spec: Mapping[str, Any], include_usage: bool) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            delay = float(spec.get("chunk_delay", 0.0))
            hold = spec.get("hold") if spec.get("chunks") is not None else None
            held_at = 1 + int(spec.get("hold_after", 0))  # chunk 0 is the role; the content pieces follow it
            for i, chunk in enumerate(_stream_chunks(payload, spec, include_usage)):
                if i == held_at and isinstance(hold, threading.Event):
                    released = hold.wait(float(spec.get("hold_timeout", 120.0)))
                    with server._lock:
                        server.held.append(released)
                if i and delay > 0:
                    time.sleep(delay)
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()

        def do_GET(self) -> None:
            if self.path.rstrip("/") == "/props" and server.n_ctx is not None:
                server.probes.append(self.path)
                self._send_json(200, {}, {"default_generation_settings": {"n_ctx": server.n_ctx}, "total_slots": 1})
                return
            request = self._request(None)
            server._record(request)
            if self.path.rstrip("/").endswith("/models"):
                self._send_json(*server._answer_models())
            else:
                self._send_json(404, {}, _error_body(f"no route {self.path}", "invalid_request_error"))

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body: Any = json.loads(raw or b"null")
            except json.JSONDecodeError:
                body = raw.decode("utf-8", "replace")
            request = self._request(body)
            server._record(request)
            if not self.path.rstrip("/").endswith("/chat/completions"):
                self._send_json(404, {}, _error_body(f"no route {self.path}", "invalid_request_error"))
                return
            status, headers, payload, spec = server._answer_chat_spec(request)
            streaming = isinstance(body, dict) and body.get("stream") is True
            if status == 200 and streaming and isinstance(payload, dict) and "choices" in payload:
                options = body.get("stream_options")
                include_usage = isinstance(options, dict) and options.get("include_usage") is True
                self._send_stream(payload, spec, include_usage)
            else:
                self._send_json(status, headers, payload)

    return Handler


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tests.support.fake_server --script FILE.json``: serve until killed; prints the URL first."""
    parser = argparse.ArgumentParser(prog="python -m tests.support.fake_server", description=__doc__.splitlines()[0])
    parser.add_argument("--script", type=Path, required=True, help="JSON object {node: [replies]}")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds to wait before every chat reply")
    parser.add_argument("--log", type=Path, default=None, help="append every request here as a JSON line")
    parser.add_argument("--model", action="append", default=None, help="a model to offer (repeatable; '*' = any)")
    args = parser.parse_args(argv)
    script = json.loads(args.script.read_text(encoding="utf-8"))
    if not isinstance(script, dict) or not all(isinstance(v, list) for v in script.values()):
        print(f"{args.script}: expected a JSON object mapping node names to lists of replies", file=sys.stderr)
        return 2
    server = ScriptedServer(script, models=args.model or ("facebook/cwm",), latency=args.latency, log=args.log)
    server.start(args.port)
    print(server.url, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
