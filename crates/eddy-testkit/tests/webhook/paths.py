"""Map webhook paths the way LeanMQWebhook does: --path (repeatable) →
{"path", "normalized", "queue"} (LeanMQ's _normalize_path, then
_path_to_queue_name, as send and @get do). Needs no Redis.
"""

import argparse
import json

from leanmq import LeanMQWebhook

from _common import emit, summary

p = argparse.ArgumentParser(description=__doc__)
p.add_argument("--paths-json", required=True, help="a JSON list of paths")
args = p.parse_args()

paths = json.loads(args.paths_json)
for path in paths:
    normalized = LeanMQWebhook._normalize_path(None, path)
    queue = LeanMQWebhook._path_to_queue_name(None, normalized)
    emit({"path": path, "normalized": normalized, "queue": queue})
summary(mapped=len(paths))
