"""Send webhooks with LeanMQWebhook.send.

Each --payload (a JSON object) goes to --path. Prints per message its stream
id and the entry as stored (its `data` field parsed, `_metadata` included).
"""

import json

from _common import connect, emit, parser, summary, text

p = parser(__doc__)
p.add_argument("--path", required=True)
p.add_argument("--payload", action="append", required=True)
args = p.parse_args()

webhook = connect(args)
queue_name = webhook._path_to_queue_name(webhook._normalize_path(args.path))
stream = args.prefix + queue_name
for text_payload in args.payload:
    stream_id = webhook.send(args.path, json.loads(text_payload))
    [(_, fields)] = webhook.mq.client.xrange(stream, min=stream_id, max=stream_id)
    entry = json.loads(text(fields[b"data"]))
    emit({"stream_id": stream_id, "stream": stream, "entry": entry})
summary(sent=len(args.payload))
