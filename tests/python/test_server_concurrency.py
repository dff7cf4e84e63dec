"""512 concurrent streaming clients, each on its own connection: every stream completes with its
tokens, a finish_reason and [DONE]. Prints the latency distribution (TTFT and end-to-end).
"""

import asyncio
import json
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import server_util  # noqa: E402

server_util.stories_model()
server_util.llm42_bin()

CLIENTS = 512
MAX_TOKENS = 24


async def one_client(port, i):
    body = {"prompt": ["Once upon a time", "The dog", "Lily", "A big ball"][i % 4],
            "max_tokens": MAX_TOKENS, "ignore_eos": True, "temperature": 0.8, "seed": i,
            "stream": True, "stream_options": {"include_usage": True},
            "deterministic": i % 8 == 0}
    data = json.dumps(body).encode()
    start = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(data) + data)
    await writer.drain()
    raw = b""
    first = None
    while True:
        chunk = await reader.read(65536)
        if not chunk:
            break
        if first is None and b'"text":"' in chunk:
            first = time.monotonic() - start
        raw += chunk
    writer.close()
    return raw, first, time.monotonic() - start


def percentile(v, q):
    v = sorted(v)
    k = (len(v) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


class ConcurrencyTest(unittest.TestCase):
    def test_512_streaming_clients(self):
        server_util.raise_fd_limit()
        with server_util.Server("--max-queue", "4096") as srv:
            async def all_clients():
                return await asyncio.gather(*(one_client(srv.port, i) for i in range(CLIENTS)))

            t0 = time.monotonic()
            results = asyncio.run(all_clients())
            wall = time.monotonic() - t0
            ttft, e2e = [], []
            for raw, first, total in results:
                head, _, body = raw.partition(b"\r\n\r\n")
                self.assertTrue(head.startswith(b"HTTP/1.1 200"), head[:60])
                payload, _ = server_util.dechunk(body)
                events = [e[6:] for e in payload.split(b"\n\n") if e]
                self.assertEqual(events[-1], b"[DONE]")
                usage = json.loads(events[-2])["usage"]
                self.assertEqual(usage["completion_tokens"], MAX_TOKENS)
                finishes = [json.loads(e)["choices"][0]["finish_reason"] for e in events[:-2]]
                self.assertEqual(finishes[-1], "length")
                ttft.append(first)
                e2e.append(total)
            print(f"\n{CLIENTS} concurrent streams of {MAX_TOKENS} tokens in {wall:.2f} s "
                  f"({CLIENTS * MAX_TOKENS / wall:.0f} output tok/s)")
            for name, v in (("TTFT", ttft), ("end-to-end", e2e)):
                print(f"  {name:10s} P50 {percentile(v, 50) * 1e3:8.1f} ms  "
                      f"P90 {percentile(v, 90) * 1e3:8.1f} ms  "
                      f"P99 {percentile(v, 99) * 1e3:8.1f} ms  max {max(v) * 1e3:8.1f} ms")
            m = srv.wait_for(lambda m: m["llm42_num_requests_running"] == 0, what="idle")
            self.assertEqual(m['llm42_http_requests_total{endpoint="/v1/completions",status="200"}'],
                             CLIENTS)
            self.assertEqual(m["llm42_kv_cache_blocks_used"], 0)


if __name__ == "__main__":
    server_util.run_tests()
