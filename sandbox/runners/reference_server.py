"""The reference server: a known, fixed workload on the candidates' interface, for calibration.

    python3 -I -S /opt/mlgrade/reference_server.py [--port 8000]

Before a candidate's server is measured, the harness measures this one in the same image, under
the same limits and on the same cores (sandbox/runners/calibrate.py), and compares its latency
with the figures it has on an idle machine: a reference that is slow says the machine is busy,
not the candidate's server. Standard library only and run with -I -S, so nothing installed in the
image (a candidate's package) runs in it. GET /health answers 200; POST /predict answers each
instance with a linear map and a softmax over its features (about 60 floating-point operations
per class), as JSON in the candidates' schema. HTTP/1.1 keep-alive, Content-Length bodies only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math

MAX_BODY = 1 << 20
CLASSES = 3


def predict(rows: list[list[float]]) -> dict:
    predictions = []
    for row in rows:
        scores = [sum(value * ((i * 7 + k * 3) % 11 - 5) / 10 for i, value in enumerate(row))
                  for k in range(CLASSES)]
        top = max(scores)
        exps = [math.exp(s - top) for s in scores]
        total = sum(exps)
        probabilities = [e / total for e in exps]
        predictions.append({"label": probabilities.index(max(probabilities)), "probabilities": probabilities})
    return {"predictions": predictions}


def answer(method: str, path: str, body: bytes) -> tuple[int, bytes]:
    if method == "GET" and path == "/health":
        return 200, b'{"status":"ok"}'
    if method == "POST" and path == "/predict":
        try:
            rows = json.loads(body)["instances"]
            return 200, json.dumps(predict(rows)).encode()
        except (ValueError, KeyError, TypeError):
            return 422, b'{"error":"bad request"}'
    return 404, b'{"error":"not found"}'


async def serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if not 0 <= length <= MAX_BODY:
                break
            status, body = answer(method, path, await reader.readexactly(length))
            writer.write(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                         % (status, len(body), body))
            await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(serve_connection, "127.0.0.1", port, limit=MAX_BODY)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000)
    asyncio.run(main(parser.parse_args().port))
