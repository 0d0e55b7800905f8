"""Create queue pairs with LeanMQ's create_queue_pair."""

from _common import connect, emit, parser, summary

p = parser(__doc__)
p.add_argument("--queue", action="append", required=True)
args = p.parse_args()
mq = connect(args)
for name in args.queue:
    main, dlq = mq.create_queue_pair(name)
    emit(
        {
            "queue": main.name,
            "group": main.consumer_group,
            "dlq": dlq.name,
            "dlq_group": dlq.consumer_group,
        }
    )
summary(created=len(args.queue))
