"""eddy's queue scenario with LeanMQ 0.2: a producer process sends batches
(LeanMQ's transaction(), one MULTI pipeline per --batch messages; or, with
--send single, one send_message call per message, LeanMQ's plain API) and a
consumer process receives up to --batch at a time (get_messages) and
acknowledges each batch in one call (acknowledge_messages); measured from the
first send to the last ack. Latency: from the send stamp in each payload to
the moment the consumer has it. The producer stays at most --window messages
ahead of the acks, as eddy's bench does (LeanMQ's XADD MAXLEN 100000 would
otherwise drop unread messages of a larger backlog).

    python queue_bench.py --url redis://127.0.0.1:6380/0 [--messages 20000]
        [--batch 100] [--payload-bytes 200] [--window 10000] [--send single]

Prints one JSON line.
"""

import argparse
import json
import multiprocessing as mp
import os
import time
from importlib.metadata import version
from urllib.parse import urlparse

from leanmq import LeanMQ


def now_us():
    return time.time_ns() // 1000


def padding(size):
    probe = json.dumps({"sent_us": now_us(), "seq": 1000000, "pad": ""})
    return "x" * max(0, size - len(probe))


def connect(url, prefix):
    u = urlparse(url)
    db = int((u.path or "/0").lstrip("/") or 0)
    return LeanMQ(
        redis_host=u.hostname or "127.0.0.1",
        redis_port=u.port or 6379,
        redis_db=db,
        redis_password=u.password,
        prefix=prefix,
    )


def producer(o, prefix, acked, go):
    mq = connect(o.url, prefix)
    queue, _ = mq.create_queue_pair("q")
    pad = padding(o.payload_bytes)
    go.wait()
    sent = 0
    while sent < o.messages:
        while o.window > 0 and sent - acked.value > o.window:
            time.sleep(0.0005)
        k = min(o.batch, o.messages - sent)
        stamp = now_us()
        if o.send == "single":
            for j in range(k):
                queue.send_message({"sent_us": now_us(), "seq": sent + j, "pad": pad})
        else:
            with mq.transaction() as tx:
                for j in range(k):
                    tx.send_message(queue, {"sent_us": stamp, "seq": sent + j, "pad": pad})
        sent += k
    mq.close()


def consumer(o, prefix, acked, ready, results):
    mq = connect(o.url, prefix)
    queue, _ = mq.create_queue_pair("q")
    latencies = []
    ready.set()
    done = 0
    while done < o.messages:
        msgs = queue.get_messages(count=o.batch, block_for_seconds=1, consumer_id="c0")
        if not msgs:
            continue
        now = now_us()
        for m in msgs:
            latencies.append((now - m.data["sent_us"]) / 1000.0)
        queue.acknowledge_messages([m.id for m in msgs])
        done += len(msgs)
        with acked.get_lock():
            acked.value = done
    end = time.time()
    latencies.sort()
    results.put((end, latencies))
    mq.close()


def quantile(sorted_values, q):
    if not sorted_values:
        return None
    i = min(len(sorted_values) - 1, max(0, int(-(-q * len(sorted_values) // 1)) - 1))
    return sorted_values[i]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default="redis://127.0.0.1:6379/0")
    p.add_argument("--messages", type=int, default=20000)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--payload-bytes", type=int, default=200)
    p.add_argument("--window", type=int, default=10000)
    p.add_argument(
        "--send",
        choices=["transaction", "single"],
        default="transaction",
        help="batches of --batch in LeanMQ.transaction() (its fastest send), "
        "or one Queue.send_message per message (its plain API)",
    )
    o = p.parse_args()

    prefix = f"bench-leanmq-{os.getpid()}:"
    admin = connect(o.url, prefix)
    admin.create_queue_pair("q")
    acked = mp.Value("q", 0)
    go = mp.Event()
    ready = mp.Event()
    results = mp.Queue()
    c = mp.Process(target=consumer, args=(o, prefix, acked, ready, results))
    w = mp.Process(target=producer, args=(o, prefix, acked, go))
    c.start()
    w.start()
    ready.wait()
    time.sleep(0.2)  # let the producer connect too
    start = time.time()
    go.set()
    end, lat = results.get()
    w.join()
    c.join()
    admin.delete_queue("q")
    admin.close()
    print(
        json.dumps(
            {
                "system": "leanmq" if o.send == "transaction" else "leanmq-single",
                "version": version("leanmq"),
                "messages": o.messages,
                "batch": o.batch,
                "payload_bytes": o.payload_bytes,
                "window": o.window,
                "msgs_per_s": round(o.messages / (end - start)),
                "p50_ms": quantile(lat, 0.5),
                "p99_ms": quantile(lat, 0.99),
                "p999_ms": quantile(lat, 0.999),
                "max_ms": lat[-1] if lat else None,
            }
        )
    )


if __name__ == "__main__":
    main()
