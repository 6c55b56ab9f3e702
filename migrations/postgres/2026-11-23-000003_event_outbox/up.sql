-- Domain events waiting to be published to the RabbitMQ exchange im.events (cluster mode).
-- Rows are written in the transaction of the change they describe, or right after it, and
-- deleted once RabbitMQ has confirmed them.
CREATE TABLE event_outbox (
    id BIGINT PRIMARY KEY NOT NULL,
    event TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
