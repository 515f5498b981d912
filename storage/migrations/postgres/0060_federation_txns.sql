-- Transactions received from other servers (PUT /_matrix/federation/v1/send):
-- the answer given to each, so that a server retrying a transaction gets the
-- same answer and its PDUs are not processed twice. Rows are kept about a day.
CREATE TABLE federation_inbound_txns (
    origin TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    response_json TEXT NOT NULL,
    received_ts BIGINT NOT NULL,
    PRIMARY KEY (origin, txn_id)
);
CREATE INDEX federation_inbound_txns_age ON federation_inbound_txns (received_ts);
