"""The floors: raw httpx doing the same requests as a generated runbook, and nothing else.

The chain floors (``bench/run.py``): one process, one keep-alive ``httpx.Client`` (plain
HTTP, so no TLS context is built, and ``trust_env=False``, as the engine does for a loopback
URL), N requests in sequence, each one's input taken from the previous answer. They print
the last ``value`` (which is N when the chain is intact)::

    python bench/floor.py membrane URL N
    python bench/floor.py pipedream URL N

The fan-out floors (``bench/fanout.py``): the items of a ``for_each`` step, the users of a
JSON file's ``users`` list (the runbook's ``--vars-file``), each sent as the Membrane
``POST /act`` the engine sends for ``dispatch: {key: invite-user}, input: {email: "{{ item.email }}"}``,
C in flight at a time. Each keeps every item's output in item order, as the engine does,
checks it echoes the item's email, and prints ``OK N`` (OK items answered correctly of N)::

    python bench/floor.py fanout-threads URL USERS.json C [RATE]  # C threads, one httpx.Client each
    python bench/floor.py fanout-shared URL USERS.json C          # C threads sharing one httpx.Client
    python bench/floor.py fanout-asyncio URL USERS.json C         # one httpx.AsyncClient, a semaphore of C
    python bench/floor.py fanout-raw URL USERS.json C             # asyncio streams, C keep-alive connections

``fanout-asyncio`` is what plain asyncio with httpx costs, and at C = 50 that is mostly
httpcore's async pool, which looks at every connection for every request it hands out
(``AsyncConnectionPool._assign_requests_to_connections``: some 5 ms of CPU per request at
C = 50, 1 ms at C = 10): so the asyncio floor the targets use is ``fanout-raw``.

``RATE`` (requests per second) spaces the threads' requests evenly, one every 1/RATE s, as
a provider's ``rate_limit`` does: the floor of the rate-limit measurement.
"""

from __future__ import annotations

import sys
from typing import Any

#: What the fan-out floors send: the engine's Membrane request for the bench runbook's step.
FANOUT_TOKEN = "test-token-123456"
FANOUT_ACTION = "invite-user"


def membrane(url: str, n: int) -> int:
    import httpx

    value = 0
    with httpx.Client(base_url=url, headers={"Authorization": "Bearer bench"},
                      verify=False, trust_env=False) as client:
        for i in range(n):
            response = client.post("/act", json={"id": "bench-echo", "input": {"n": value, "i": i}})
            response.raise_for_status()
            value = response.json()["output"]["value"]
    return value


def pipedream(url: str, n: int) -> int:
    import httpx

    value = 0
    with httpx.Client(base_url=url, verify=False, trust_env=False) as client:
        token = client.post("/v1/oauth/token", json={
            "grant_type": "client_credentials", "client_id": "bench", "client_secret": "bench",
        })
        token.raise_for_status()
        client.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
        client.headers["x-pd-environment"] = "development"
        for i in range(n):
            response = client.post("/v1/connect/proj_bench/actions/run", json={
                "id": "bench-echo", "external_user_id": "bench-user",
                "configured_props": {"n": value, "i": i},
            })
            response.raise_for_status()
            value = response.json()["ret"]["value"]
    return value


# --------------------------------------------------------------------------- fan-out


def load_users(path: str) -> list[dict[str, Any]]:
    """The ``users`` list of a vars file written as JSON."""
    import json

    with open(path, encoding="utf-8") as fh:
        users = json.load(fh)["users"]
    if not isinstance(users, list):
        raise ValueError(f"{path}: users is not a list")
    return users


def act_body(user: dict[str, Any]) -> dict[str, Any]:
    """The ``/act`` body of one item."""
    return {"key": FANOUT_ACTION, "input": {"email": user["email"]}}


def count_ok(users: list[dict[str, Any]], outputs: list[Any]) -> int:
    """How many items got an output that echoes their email."""
    return sum(1 for user, out in zip(users, outputs, strict=True)
               if isinstance(out, dict) and out.get("email") == user["email"])


def fanout_threads(url: str, users: list[dict[str, Any]], concurrency: int, rate: float | None = None) -> int:
    """``concurrency`` threads, one keep-alive ``httpx.Client`` each, taking the next item as
    they finish one; with ``rate``, one shared gate spaces the requests ``1 / rate`` s apart."""
    import threading
    import time

    import httpx

    outputs: list[Any] = [None] * len(users)
    lock = threading.Lock()
    cursor = 0
    next_slot = 0.0
    interval = 1.0 / rate if rate else 0.0

    def take() -> int:
        nonlocal cursor, next_slot
        with lock:
            index = cursor
            cursor += 1
            if not interval or index >= len(users):
                return index
            now = time.monotonic()
            slot = max(now, next_slot)
            next_slot = slot + interval
        if slot > now:
            time.sleep(slot - now)
        return index

    def work() -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {FANOUT_TOKEN}"},
                          verify=False, trust_env=False) as client:
            while (index := take()) < len(users):
                response = client.post("/act", json=act_body(users[index]))
                response.raise_for_status()
                outputs[index] = response.json()["output"]

    threads = [threading.Thread(target=work) for _ in range(min(concurrency, len(users)))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return count_ok(users, outputs)


def fanout_shared(url: str, users: list[dict[str, Any]], concurrency: int) -> int:
    """``concurrency`` threads sharing one ``httpx.Client`` (its default pool: 100 connections,
    20 kept alive), as an engine with one client per provider instance does."""
    import threading

    import httpx

    outputs: list[Any] = [None] * len(users)
    items = iter(range(len(users)))
    lock = threading.Lock()

    def work(client: httpx.Client) -> None:
        while True:
            with lock:
                index = next(items, None)
            if index is None:
                return
            response = client.post("/act", json=act_body(users[index]))
            response.raise_for_status()
            outputs[index] = response.json()["output"]

    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {FANOUT_TOKEN}"},
                      verify=False, trust_env=False) as client:
        threads = [threading.Thread(target=work, args=(client,)) for _ in range(min(concurrency, len(users)))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return count_ok(users, outputs)


def fanout_asyncio(url: str, users: list[dict[str, Any]], concurrency: int) -> int:
    """One ``httpx.AsyncClient`` (a pool of ``concurrency`` keep-alive connections), a task per
    item, an ``asyncio.Semaphore(concurrency)`` around each request."""
    import asyncio

    import httpx

    async def main() -> list[Any]:
        semaphore = asyncio.Semaphore(concurrency)
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {FANOUT_TOKEN}"},
                                     verify=False, trust_env=False, limits=limits) as client:

            async def one(user: dict[str, Any]) -> Any:
                async with semaphore:
                    response = await client.post("/act", json=act_body(user))
                response.raise_for_status()
                return response.json()["output"]

            return await asyncio.gather(*(one(user) for user in users))

    return count_ok(users, asyncio.run(main()))


def fanout_raw(url: str, users: list[dict[str, Any]], concurrency: int) -> int:
    """Asyncio streams, no HTTP library: ``concurrency`` keep-alive connections, each a
    coroutine sending the next item's request (the headers httpx sends) and reading its
    Content-Length answer. What plain asyncio costs, with no client library on top."""
    import asyncio
    import json
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    head = (f"POST /act HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: */*\r\nAccept-Encoding: gzip, deflate\r\n"
            f"Connection: keep-alive\r\nUser-Agent: bench-floor\r\nAuthorization: Bearer {FANOUT_TOKEN}\r\n"
            "Content-Type: application/json\r\nContent-Length: ").encode()
    outputs: list[Any] = [None] * len(users)
    items = iter(range(len(users)))

    async def work() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for index in items:
                body = json.dumps(act_body(users[index]), separators=(",", ":")).encode()
                writer.write(b"%s%d\r\n\r\n%s" % (head, len(body), body))
                status_line, _, headers = (await reader.readuntil(b"\r\n\r\n")).partition(b"\r\n")
                length = 0
                for line in headers.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                answer = await reader.readexactly(length)
                if status_line.split(b" ", 2)[1] != b"200":
                    raise RuntimeError(f"item {index}: {status_line!r} {answer[:200]!r}")
                outputs[index] = json.loads(answer)["output"]
        finally:
            writer.close()

    async def main() -> None:
        await asyncio.gather(*(work() for _ in range(min(concurrency, len(users)))))

    asyncio.run(main())
    return count_ok(users, outputs)


FANOUT_FLOORS = {"fanout-threads": fanout_threads, "fanout-shared": fanout_shared, "fanout-asyncio": fanout_asyncio,
                 "fanout-raw": fanout_raw}
USAGE = ("usage: floor.py membrane|pipedream URL N\n"
         "       floor.py fanout-threads|fanout-shared|fanout-asyncio|fanout-raw URL USERS.json C [RATE]\n")


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] in ("membrane", "pipedream"):
        kind, url, n = argv[0], argv[1], int(argv[2])
        value = membrane(url, n) if kind == "membrane" else pipedream(url, n)
        sys.stdout.write(f"{value}\n")
        return 0
    if argv and argv[0] in FANOUT_FLOORS and (len(argv) == 4 or (len(argv) == 5 and argv[0] == "fanout-threads")):
        users = load_users(argv[2])
        concurrency = int(argv[3])
        if concurrency < 1:
            sys.stderr.write("C is at least 1\n")
            return 2
        if len(argv) == 5:
            ok = fanout_threads(argv[1], users, concurrency, float(argv[4]))
        else:
            ok = FANOUT_FLOORS[argv[0]](argv[1], users, concurrency)
        sys.stdout.write(f"{ok} {len(users)}\n")
        return 0 if ok == len(users) else 1
    sys.stderr.write(USAGE)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
