"""Receive messages with LeanMQ's Queue.get_messages (reads `>`), and
optionally acknowledge them with acknowledge_messages."""

from _common import connect, emit, message_json, parser, queue_or_fail, summary

p = parser(__doc__)
p.add_argument("--queue", required=True)
p.add_argument("--dlq", action="store_true", help="read the queue's DLQ")
p.add_argument("--count", type=int, default=100)
p.add_argument("--block-seconds", type=int)
p.add_argument("--consumer", default="default-consumer")
p.add_argument("--ack", action="store_true")
args = p.parse_args()

mq = connect(args)
queue = queue_or_fail(mq, args.queue, dlq=args.dlq)
messages = queue.get_messages(
    count=args.count,
    block_for_seconds=args.block_seconds,
    consumer_id=args.consumer,
)
for m in messages:
    emit(message_json(m))
acked = None
if args.ack:
    acked = queue.acknowledge_messages([m.id for m in messages])
summary(received=len(messages), acked=acked)
