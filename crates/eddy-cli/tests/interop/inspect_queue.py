"""Dump what a queue pair looks like on Redis, read with plain redis-py
commands (no LeanMQ side effects such as creating groups): per stream
(queue, then DLQ) its metadata hash, consumer groups, entries with
`_metadata` left in, and TTL index; then the registry in the summary."""

from _common import emit, parser, raw_entries, summary, text

from redis import Redis

p = parser(__doc__)
p.add_argument("--queue", required=True)
args = p.parse_args()
client = Redis(host=args.host, port=args.port)

for stream in (f"{args.prefix}{args.queue}", f"{args.prefix}{args.queue}:dlq"):
    exists = bool(client.exists(stream))
    meta = {text(k): text(v) for k, v in client.hgetall(f"{stream}:metadata").items()}
    groups = []
    if exists:
        for g in client.xinfo_groups(stream):
            groups.append(
                {
                    "name": text(g["name"]),
                    "pending": g["pending"],
                    "last_delivered_id": text(g["last-delivered-id"]),
                    "consumers": g["consumers"],
                }
            )
    expiry = [
        [text(member), score]
        for member, score in client.zrange(f"{stream}:expiry", 0, -1, withscores=True)
    ]
    emit(
        {
            "stream": stream,
            "exists": exists,
            "type": text(client.type(stream)),
            "metadata": meta,
            "groups": groups,
            "entries": raw_entries(client, stream) if exists else [],
            "expiry": expiry,
        }
    )
summary(registry=sorted(text(m) for m in client.smembers(f"{args.prefix}registry")))
