"""List queues with LeanMQ's list_queues (one line per QueueInfo)."""

from _common import connect, emit, parser, summary

args = parser(__doc__).parse_args()
mq = connect(args)
queues = mq.list_queues()
for q in sorted(queues, key=lambda q: q.name):
    emit(
        {
            "name": q.name,
            "is_dlq": q.is_dlq,
            "message_count": q.message_count,
            "consumer_group": q.consumer_group,
            "pending_messages": q.pending_messages,
            "created_at": q.created_at,
        }
    )
summary(count=len(queues))
