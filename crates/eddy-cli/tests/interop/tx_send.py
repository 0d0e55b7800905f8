"""Send to several queues in one LeanMQ transaction (MULTI/EXEC pipeline).
Each --send is QUEUE=JSON."""

import json

from _common import connect, emit, parser, queue_or_fail, summary

p = parser(__doc__)
p.add_argument("--send", action="append", required=True, metavar="QUEUE=JSON")
args = p.parse_args()

mq = connect(args)
tracking = []
with mq.transaction() as tx:
    for item in args.send:
        name, _, payload = item.partition("=")
        queue = queue_or_fail(mq, name)
        tracking.append({"queue": name, "message_id": tx.send_message(queue, json.loads(payload))})
for t in tracking:
    emit(t)
summary(sent=len(tracking))
