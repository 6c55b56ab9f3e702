#!/usr/bin/env python3
"""A little traffic for tests/prometheus/run.sh, so that every broker series has moved.

bob opens a STOMP session over TCP (on the last node given) and subscribes to his messages;
alice sends him messages over REST (on the first node); bob answers over STOMP. Then one send
the broker refuses (empty text: INVALID_ARGUMENT) and one REST call with a bad token. Checks
that each step got the expected answer and that bob received alice's messages, which in
cluster mode crossed RabbitMQ from one node to the other.

Standard library only. Environment: TRAFFIC_HTTP (space-separated host:port of each node's
HTTP listener), TRAFFIC_STOMP (host:port of a STOMP over TCP listener), TRAFFIC_TOKEN_ALICE,
TRAFFIC_TOKEN_BOB, TRAFFIC_RUN (a word that makes this run's clientMsgIds unique).
"""

import json
import os
import socket
import sys
import time
import urllib.error
import urllib.request

MESSAGES = 5


def fail(message):
    print(f"traffic: {message}", file=sys.stderr)
    sys.exit(1)


class Stomp:
    """A minimal STOMP 1.2 client over TCP: enough for CONNECT, SUBSCRIBE, SEND, DISCONNECT."""

    def __init__(self, addr):
        host, port = addr.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.buffer = b""

    def send(self, command, headers, body=b""):
        lines = [command] + [f"{k}:{v}" for k, v in headers.items()]
        if body:
            lines.append(f"content-length:{len(body)}")
        self.sock.sendall("\n".join(lines).encode() + b"\n\n" + body + b"\0")

    def frame(self, deadline):
        """The next frame as (command, headers, body); heart-beat EOLs are skipped."""
        while True:
            self.buffer = self.buffer.lstrip(b"\r\n")
            head_end = self.buffer.find(b"\n\n")
            if head_end >= 0:
                head = self.buffer[:head_end].decode().replace("\r", "").split("\n")
                headers = {}
                for line in head[1:]:
                    name, _, value = line.partition(":")
                    headers.setdefault(name, value)
                start = head_end + 2
                if "content-length" in headers:
                    end = start + int(headers["content-length"])
                    if len(self.buffer) > end:
                        body = self.buffer[start:end]
                        self.buffer = self.buffer[end + 1:]
                        return head[0], headers, body
                else:
                    end = self.buffer.find(b"\0", start)
                    if end >= 0:
                        body = self.buffer[start:end]
                        self.buffer = self.buffer[end + 1:]
                        return head[0], headers, body
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no complete frame in time")
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the broker closed the connection")
            self.buffer += chunk

    def expect(self, command, seconds=10, **match):
        """Reads frames until one `command` whose headers include `match`; returns the others."""
        deadline = time.monotonic() + seconds
        skipped = []
        while True:
            got = self.frame(deadline)
            if got[0] == "ERROR":
                fail(f"ERROR frame: {got[1]} {got[2][:200]!r}")
            if got[0] == command and all(got[1].get(k.replace("_", "-")) == v for k, v in match.items()):
                return got, skipped
            skipped.append(got)


def rest(addr, method, path, token, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://{addr}{path}", data=data, method=method)
    request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def main():
    http = os.environ["TRAFFIC_HTTP"].split()
    stomp_addr = os.environ["TRAFFIC_STOMP"]
    alice = os.environ["TRAFFIC_TOKEN_ALICE"]
    bob = os.environ["TRAFFIC_TOKEN_BOB"]
    run = os.environ.get("TRAFFIC_RUN", str(os.getpid()))
    rest_addr = http[0]

    session = Stomp(stomp_addr)
    session.send("CONNECT", {"accept-version": "1.2", "host": "localhost", "heart-beat": "0,0",
                             "Authorization": f"Bearer {bob}"})
    session.expect("CONNECTED")
    session.send("SUBSCRIBE", {"id": "0", "destination": "/user/queue/messages", "receipt": "sub"})
    session.expect("RECEIPT", receipt_id="sub")

    for i in range(MESSAGES):
        status, body = rest(rest_addr, "POST", "/api/v1/messages", alice,
                            {"to": "bob", "clientMsgId": f"{run}-m{i}", "content": f"hi {i}"})
        if status not in (200, 201):
            fail(f"POST /api/v1/messages answered {status}: {body}")

    received = set()
    deadline = time.monotonic() + 15
    while len(received) < MESSAGES:
        try:
            command, headers, body = session.frame(deadline)
        except TimeoutError:
            fail(f"bob received {len(received)} of alice's {MESSAGES} messages")
        if command == "ERROR":
            fail(f"ERROR frame: {headers} {body[:200]!r}")
        if command == "MESSAGE" and headers.get("event") == "message.new":
            message = json.loads(body)
            if message.get("senderId") == "alice":
                received.add(message.get("clientMsgId"))

    reply = json.dumps({"to": "alice", "clientMsgId": f"{run}-reply", "content": "hello"}).encode()
    session.send("SEND", {"destination": "/app/private.send", "content-type": "application/json",
                          "receipt": "reply"}, reply)
    session.expect("RECEIPT", receipt_id="reply")

    # Two refusals, so that error series move too.
    status, body = rest(rest_addr, "POST", "/api/v1/messages", alice,
                        {"to": "bob", "clientMsgId": f"{run}-empty", "content": ""})
    if status != 400:
        fail(f"an empty message was answered {status}, not 400: {body}")
    status, body = rest(rest_addr, "GET", "/api/v1/conversations", "not-a-token")
    if status != 401:
        fail(f"a bad token was answered {status}, not 401: {body}")

    session.send("DISCONNECT", {"receipt": "bye"})
    session.expect("RECEIPT", receipt_id="bye")
    session.sock.close()
    print(f"traffic: {MESSAGES} messages alice -> bob over REST ({rest_addr}), received over "
          f"STOMP ({stomp_addr}); 1 reply over STOMP; 1 refused send, 1 refused token")


if __name__ == "__main__":
    main()
