#!/usr/bin/env python3
"""A local stand-in for the AWS Lambda Runtime API, for benchmarks of a function's release binary.

It starts the binary with AWS_LAMBDA_RUNTIME_API pointing at itself, serves it API Gateway events
one at a time (as Lambda does: one instance, one request at a time), and reports what a cold
start and a warm invocation cost and how much memory the process held:

  exec_to_next_ms      exec -> the first GET /invocation/next (the runtime is ready)
  first_response_ms    exec -> the first response posted
  warm_median_ms       event handed over -> response posted, median over the later invocations
  peak_rss_mib         the process's VmHWM at the end (its peak resident set)
  rss_mib, threads     its VmRSS and thread count at the end

  scripts/lambda-sim.py --event tests/fixtures/events/auth_login.json --count 200 \
      -- target/release/auth

The Runtime API paths are the documented ones ("AWS Lambda runtime API", Lambda developer
guide), plus the Extensions API's register and event/next that lambda_runtime's graceful
shutdown uses: the extension is told SHUTDOWN once every event is answered. A benchmark aid,
not a test: it never judges the answers beyond counting their status codes.
"""

import argparse
import json
import os
import queue
import statistics
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--event", action="append", required=True, help="an API Gateway v2 event file")
    p.add_argument("--count", type=int, default=1, help="invocations of each event, in turn")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for each answer")
    p.add_argument("command", nargs=argparse.REMAINDER)
    args = p.parse_args()
    if args.command and args.command[0] == "--":
        args.command = args.command[1:]
    if not args.command:
        p.error("the function's command goes after --")
    return args


class Sim:
    def __init__(self, events, count):
        self.pending = queue.Queue()
        for _ in range(count):
            for event in events:
                self.pending.put(event)
        self.total = count * len(events)
        self.started = None
        self.first_next = None
        self.first_response = None
        self.handed = {}
        self.durations = []
        self.statuses = {}
        self.done = threading.Event()
        self.shutdown = threading.Event()
        self.lock = threading.Lock()


def handler_for(sim):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_):
            pass

        def reply(self, status, body=b"", headers=None):
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def body(self):
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        def do_GET(self):
            now = time.perf_counter()
            if self.path == "/2018-06-01/runtime/invocation/next":
                with sim.lock:
                    if sim.first_next is None:
                        sim.first_next = now
                event = sim.pending.get()  # blocks, as Lambda does between requests
                request_id = str(uuid.uuid4())
                with sim.lock:
                    sim.handed[request_id] = time.perf_counter()
                deadline = int((time.time() + 900) * 1000)
                self.reply(200, event, {
                    "Content-Type": "application/json",
                    "Lambda-Runtime-Aws-Request-Id": request_id,
                    "Lambda-Runtime-Deadline-Ms": str(deadline),
                    "Lambda-Runtime-Invoked-Function-Arn":
                        "arn:aws:lambda:us-east-1:123456789012:function:sim",
                    "Lambda-Runtime-Trace-Id":
                        "Root=1-67890abc-1234567890abcdef01234567;Parent=1;Sampled=0",
                })
            elif self.path == "/2020-01-01/extension/event/next":
                sim.shutdown.wait()
                self.reply(200, json.dumps({
                    "eventType": "SHUTDOWN", "shutdownReason": "spindown",
                    "deadlineMs": int((time.time() + 2) * 1000),
                }).encode(), {"Content-Type": "application/json"})
            else:
                self.reply(404)

        def do_POST(self):
            now = time.perf_counter()
            body = self.body()
            parts = self.path.split("/")
            if self.path == "/2020-01-01/extension/register":
                answer = {"functionName": "sim", "functionVersion": "$LATEST",
                          "handler": "bootstrap"}
                self.reply(200, json.dumps(answer).encode(),
                           {"Lambda-Extension-Identifier": str(uuid.uuid4()),
                            "Content-Type": "application/json"})
            elif len(parts) == 5 and parts[2] == "runtime" and parts[3] == "init":
                print(f"init error: {body[:500]!r}", file=sys.stderr)
                self.reply(202)
                sim.done.set()
            elif len(parts) == 6 and parts[3] == "invocation" and parts[5] in ("response", "error"):
                request_id = parts[4]
                status = "error"
                if parts[5] == "response":
                    try:
                        status = str(json.loads(body).get("statusCode", "?"))
                    except (ValueError, AttributeError):
                        status = "unparsed"
                with sim.lock:
                    if sim.first_response is None:
                        sim.first_response = now
                    sim.durations.append(now - sim.handed.pop(request_id, now))
                    sim.statuses[status] = sim.statuses.get(status, 0) + 1
                    if len(sim.durations) == sim.total:
                        sim.done.set()
                self.reply(202, b"{}", {"Content-Type": "application/json"})
            else:
                self.reply(404)

    return Handler


def proc_status(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    kib = lambda k: int(fields.get(k, "0 kB").split()[0])  # noqa: E731
    return kib("VmHWM") / 1024, kib("VmRSS") / 1024, int(fields.get("Threads", "0"))


def main():
    args = parse_args()
    events = []
    for path in args.event:
        with open(path, "rb") as f:
            events.append(f.read())
    sim = Sim(events, args.count)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(sim))
    # The function hangs up its long polls when it exits: nothing to report.
    server.handle_error = lambda *_: None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = dict(os.environ)
    env["AWS_LAMBDA_RUNTIME_API"] = f"127.0.0.1:{server.server_address[1]}"
    env.setdefault("AWS_LAMBDA_FUNCTION_NAME", "sim")
    env.setdefault("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
    env.setdefault("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
    env.setdefault("AWS_REGION", "us-east-1")
    sim.started = time.perf_counter()
    proc = subprocess.Popen(args.command, env=env, stdout=None if os.environ.get("SIM_SHOW_OUTPUT") else subprocess.DEVNULL)
    deadline = time.monotonic() + args.timeout * sim.total
    while not sim.done.wait(0.05):
        if proc.poll() is not None or time.monotonic() > deadline:
            break
    finished = sim.done.is_set()
    peak, rss, threads = proc_status(proc.pid) if proc.poll() is None else (0, 0, 0)
    sim.shutdown.set()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
    server.shutdown()
    ms = lambda t: None if t is None else round((t - sim.started) * 1000, 2)  # noqa: E731
    warm = sim.durations[1:] or sim.durations
    report = {
        "invocations": len(sim.durations),
        "statuses": sim.statuses,
        "exec_to_next_ms": ms(sim.first_next),
        "first_response_ms": ms(sim.first_response),
        "first_invocation_ms": round(sim.durations[0] * 1000, 2) if sim.durations else None,
        "warm_median_ms": round(statistics.median(warm) * 1000, 3) if warm else None,
        "peak_rss_mib": round(peak, 1),
        "rss_mib": round(rss, 1),
        "threads": threads,
    }
    print(json.dumps(report))
    return 0 if finished and len(sim.durations) == sim.total else 1


if __name__ == "__main__":
    sys.exit(main())
