"""Handle webhooks with LeanMQWebhook's @webhook.get handlers and
process_messages(block=True, timeout=1, count=10), until --expect messages
were handled or --deadline seconds passed.

Prints each delivery as {"route": PATH, "data": DATA}, where DATA is exactly
what the handler got. With --reply, a delivery that carries eddy's request
fields is answered the way a Python service answers an eddy request:
webhook.send(data["_reply_to"], {"_correlation_id": ..., "reply": {...}}).
"""

import time

from _common import connect, emit, parser, summary

p = parser(__doc__)
p.add_argument("--path", action="append", required=True)
p.add_argument("--expect", type=int, required=True)
p.add_argument("--deadline", type=float, default=30.0)
p.add_argument("--reply", action="store_true")
args = p.parse_args()

webhook = connect(args)
handled = []


def handler_for(route):
    def handle(data):
        handled.append(data)
        emit({"route": route, "data": data})
        if args.reply and "_reply_to" in data:
            webhook.send(
                data["_reply_to"],
                {
                    "_correlation_id": data["_correlation_id"],
                    "reply": {"handled_by": "python", "route": route, "echo": data},
                },
            )

    return handle


for path in args.path:
    webhook.get(path)(handler_for(path))

emit({"ready": True})
processed = 0
deadline = time.monotonic() + args.deadline
while len(handled) < args.expect and time.monotonic() < deadline:
    processed += webhook.process_messages(block=True, timeout=1, count=10)
summary(handled=len(handled), processed=processed)
