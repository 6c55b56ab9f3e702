-- Push tokens of users' devices, for offline push.
CREATE TABLE devices (
    user_id TEXT NOT NULL,
    token TEXT NOT NULL,
    platform TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, token)
);
