"""Shared helpers for the LeanMQ webhook interop scripts run by ../webhook.rs.

Every script uses the real `leanmq` package (LeanMQ 0.2) and its
`LeanMQWebhook`, does one thing, and prints JSON lines on stdout: one line per
record, then one final line `{"summary": {...}}`. Errors go to stderr with a
non-zero exit status.
"""

import argparse
import json
import sys

from leanmq import LeanMQWebhook


def parser(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--prefix", default="webhook:")
    return p


def connect(args):
    return LeanMQWebhook(
        redis_host=args.host,
        redis_port=args.port,
        prefix=args.prefix,
        auto_start=False,
    )


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def summary(**fields):
    emit({"summary": fields})


def text(value):
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
