"""Run LeanMQ's process_expired_messages (its TTL sweep)."""

from _common import connect, parser, summary

args = parser(__doc__).parse_args()
mq = connect(args)
summary(expired=mq.process_expired_messages())
