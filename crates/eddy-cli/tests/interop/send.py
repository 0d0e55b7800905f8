"""Send messages with LeanMQ's Queue.send_message (or a LeanMQ transaction).

Each --payload is a JSON object (Python's json.loads, so NaN is accepted).
Prints per message its stream id and the `_metadata` LeanMQ wrote.
"""

import json

from _common import connect, emit, parser, queue_or_fail, raw_entries, summary

p = parser(__doc__)
p.add_argument("--queue", required=True)
p.add_argument("--create", action="store_true", help="create_queue_pair first")
p.add_argument("--payload", action="append", required=True)
p.add_argument("--ttl", type=int)
p.add_argument("--message-id")
args = p.parse_args()

mq = connect(args)
if args.create:
    queue, _ = mq.create_queue_pair(args.queue)
else:
    queue = queue_or_fail(mq, args.queue)

for text_payload in args.payload:
    payload = json.loads(text_payload)
    stream_id = queue.send_message(payload, message_id=args.message_id, ttl=args.ttl)
    [entry] = raw_entries(mq.client, queue.name, stream_id, stream_id)
    emit({"stream_id": stream_id, "metadata": entry["data"]["_metadata"]})
summary(sent=len(args.payload))
