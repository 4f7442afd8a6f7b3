"""The floor: a raw httpx loop doing the same dependent requests as a generated runbook.

One process, one keep-alive ``httpx.Client`` (plain HTTP, so no TLS context is
built, and ``trust_env=False``, as the engine does for a loopback URL), N
requests in sequence, each one's input taken from the previous answer. It
prints the last ``value`` (which is N when the chain is intact)::

    python bench/floor.py membrane URL N
    python bench/floor.py pipedream URL N
"""

from __future__ import annotations

import sys


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


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in ("membrane", "pipedream"):
        sys.stderr.write("usage: floor.py membrane|pipedream URL N\n")
        return 2
    kind, url, n = argv[0], argv[1], int(argv[2])
    value = membrane(url, n) if kind == "membrane" else pipedream(url, n)
    sys.stdout.write(f"{value}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
