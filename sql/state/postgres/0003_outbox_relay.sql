-- ebb state store: the outbox relay's lease. A relayer claims unrelayed events for a while
-- (relay_until, Unix milliseconds); while its claim is live no other relayer takes any, so
-- events go out in id order from one process at a time, and a dead relayer's claim expires.
ALTER TABLE outbox ADD COLUMN relay_worker TEXT;
ALTER TABLE outbox ADD COLUMN relay_until BIGINT;
