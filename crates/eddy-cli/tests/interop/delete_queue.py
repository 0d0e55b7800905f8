"""Delete a queue (and its DLQ unless --keep-dlq) with LeanMQ's delete_queue."""

from _common import connect, parser, summary

p = parser(__doc__)
p.add_argument("--queue", required=True)
p.add_argument("--keep-dlq", action="store_true")
args = p.parse_args()
mq = connect(args)
summary(deleted=mq.delete_queue(args.queue, delete_dlq=not args.keep_dlq))
