"""A stand-in `inference_app` for CLI tests: the real one needs torch and a model; this one
answers the same contract (env vars, /ready, /health, key check, chat completion, streaming,
/score) in a few lines.

Cold start: while the file named by STANDIN_COLD_FILE holds a number N > 0, /ready and every
POST answer 503 (as a starting replica behind the platform does), counting N down per request."""

from __future__ import annotations

from pathlib import Path

MAIN = """
import json, os, pathlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

KEYS = {os.environ["ACA_INFER_API_KEY_PRIMARY"], os.environ["ACA_INFER_API_KEY_SECONDARY"]}
if os.environ.get("STANDIN_CRASH_RELEASE") == os.environ.get("ACA_INFER_RELEASE"):
    raise SystemExit("stand-in: this release is configured to crash")
if os.environ.get("STANDIN_HANG_RELEASE") == os.environ.get("ACA_INFER_RELEASE"):
    import threading
    print("stand-in: this release never gets ready", flush=True)
    threading.Event().wait()


def cold():
    path = pathlib.Path(os.environ.get("STANDIN_COLD_FILE", "/nonexistent"))
    try:
        left = int(path.read_text())
    except (OSError, ValueError):
        return False
    if left <= 1:
        path.unlink()
    else:
        path.write_text(str(left - 1))
    return True


def answer(messages):
    return "echo: " + messages[-1]["content"]


class Handler(BaseHTTPRequestHandler):
    def _send(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/health":
            return self._send(200, {
                "status": "ok",
                "release": os.environ["ACA_INFER_RELEASE"],
                "instance_id": os.environ.get("ACA_INFER_INSTANCE_ID", "unknown"),
            })
        if self.path == "/v1/models":
            if self.headers.get("authorization", "").removeprefix("Bearer ") not in KEYS:
                return self._send(401, {"error": {"message": "bad key", "type": "auth"}})
            return self._send(200, {"object": "list", "data": [{"id": "standin"}]})
        if self.path == "/ready":
            if cold():
                return self._send(503, {"ready": False, "reason": "loading the model"})
            return self._send(200, {"ready": True, "reason": ""})
        if self.path.startswith("/slow?gate="):
            # A long request: answers once the file named by `gate` exists.
            import pathlib, time
            gate = pathlib.Path(self.path.split("=", 1)[1])
            pathlib.Path(str(gate) + ".started").write_text("")
            while not gate.exists():
                time.sleep(0.01)
            return self._send(200, {"release": os.environ["ACA_INFER_RELEASE"]})
        self._send(404, {"error": {"message": "not found"}})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        if cold():
            return self._send(503, {"error": {"message": "no replica yet"}})
        if self.headers.get("authorization", "").removeprefix("Bearer ") not in KEYS:
            return self._send(401, {"error": {"message": "bad key", "type": "auth"}})
        if self.path == "/score":
            return self._score(body)
        if body.get("model", "standin") != "standin":
            message = f"The model '{body['model']}' does not exist"
            return self._send(404, {"error": {"message": message, "type": "not_found"}})
        if body.get("temperature", 1) < 0:
            message = "temperature: Input should be greater than or equal to 0"
            return self._send(400, {"error": {"message": message, "type": "invalid_request"}})
        if "STANDIN_FAIL_STATUS" in os.environ:
            status = int(os.environ["STANDIN_FAIL_STATUS"])
            return self._send(status, {"error": {"message": "boom"}})
        text = answer(body["messages"])
        if body.get("stream"):
            return self._stream(text)
        self._send(200, {"model": "standin", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ], "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}})

    def _score(self, body):
        if "text" in body:
            return self._send(200, {"output": "echo: " + body["text"]})
        inputs = body["input_data"]["input_string"]
        if all(isinstance(item, dict) for item in inputs):
            return self._send(200, {"output": answer(inputs)})
        return self._send(200, [
            {"0": answer(item) if isinstance(item, list) else "echo: " + item} for item in inputs
        ])

    def _stream(self, text):
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.end_headers()
        for token in text.split(" "):
            chunk = {"model": "standin", "choices": [{"index": 0, "delta": {"content": token + " "},
                     "finish_reason": None}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\\n\\n".encode())
            self.wfile.flush()
        final = {"model": "standin",
                 "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        self.wfile.write(b": keep-alive\\n\\n")
        self.wfile.write(f"data: {json.dumps(final)}\\n\\ndata: [DONE]\\n\\n".encode())
        self.wfile.flush()

    def log_message(self, *args):
        pass


ADDRESS = (os.environ["ACA_INFER_HOST"], int(os.environ["ACA_INFER_PORT"]))
ThreadingHTTPServer(ADDRESS, Handler).serve_forever()
"""


def write_standin_app(directory: Path) -> Path:
    app = directory / "inference_app"
    app.mkdir(parents=True, exist_ok=True)
    (app / "__init__.py").write_text("")
    (app / "__main__.py").write_text(MAIN)
    return app


def write_model_files(share: Path) -> None:
    base = share / "model-cache/microsoft/Phi-3-mini-4k-instruct"
    adapter = share / "models/qlora/qlora/gpu_model/adapter"
    base.mkdir(parents=True)
    adapter.mkdir(parents=True)
    (base / "config.json").write_text("{}")
    (adapter / "adapter_config.json").write_text("{}")
