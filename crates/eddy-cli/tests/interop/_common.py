"""Shared helpers for the LeanMQ interop scripts run by ../interop.rs.

Every script connects with the real `leanmq` package (LeanMQ 0.2), does one
thing, and prints JSON lines on stdout: one line per record, then one final
line `{"summary": {...}}`. Errors go to stderr with a non-zero exit status.
"""

import argparse
import json
import sys

from leanmq import LeanMQ


def parser(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--prefix", default="mq:")
    return p


def connect(args):
    return LeanMQ(redis_host=args.host, redis_port=args.port, prefix=args.prefix)


def _strict(obj):
    """The value as strict JSON can hold it: Python writes NaN and Infinity,
    which are not JSON, so they are printed as the strings "NaN" etc."""
    if isinstance(obj, float) and obj != obj or obj in (float("inf"), float("-inf")):
        return str(obj).replace("nan", "NaN").replace("inf", "Infinity")
    if isinstance(obj, dict):
        return {k: _strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict(v) for v in obj]
    return obj


def emit(obj):
    sys.stdout.write(json.dumps(_strict(obj), allow_nan=False) + "\n")
    sys.stdout.flush()


def summary(**fields):
    emit({"summary": fields})


def fail(message):
    sys.stderr.write(message + "\n")
    sys.exit(2)


def text(value):
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def message_json(m):
    """A leanmq.Message as JSON (LeanMQ has already popped `_metadata`)."""
    return {
        "id": m.id,
        "data": m.data,
        "timestamp": m.timestamp,
        "delivery_count": m.delivery_count,
    }


def raw_entries(client, stream, start="-", end="+"):
    """XRANGE with each entry's `data` field parsed, `_metadata` left in."""
    out = []
    for entry_id, fields in client.xrange(stream, min=start, max=end):
        fields = {text(k): v for k, v in fields.items()}
        raw = fields.get("data")
        try:
            data = json.loads(text(raw)) if raw is not None else None
        except ValueError:
            data = {"_unparsable": text(raw)}
        out.append(
            {"id": text(entry_id), "fields": sorted(fields), "data": data}
        )
    return out


def queue_or_fail(mq, name, dlq=False):
    q = mq.get_dead_letter_queue(name) if dlq else mq.get_queue(name)
    if q is None:
        fail(f"leanmq: {'dead-letter queue of ' if dlq else 'queue '}{name!r} not found")
    return q
