"""Dead-letter messages with LeanMQ's Queue.move_to_dlq: the given stream
ids, or else whatever get_messages returns."""

from _common import connect, emit, message_json, parser, queue_or_fail, summary

p = parser(__doc__)
p.add_argument("--queue", required=True)
p.add_argument("--reason", required=True)
p.add_argument("--id", action="append", default=[])
p.add_argument("--count", type=int, default=100)
args = p.parse_args()

mq = connect(args)
queue = queue_or_fail(mq, args.queue)
dlq = queue_or_fail(mq, args.queue, dlq=True)
ids = list(args.id)
if not ids:
    for m in queue.get_messages(count=args.count):
        emit(message_json(m))
        ids.append(m.id)
moved = queue.move_to_dlq(ids, args.reason, dlq)
summary(ids=ids, moved=moved)
