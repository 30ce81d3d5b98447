-- Tasks, their messages, handler definitions, API clients and cluster settings.
-- Times are ISO 8601 text in UTC with microseconds (they sort as text); JSON is canonical text.

CREATE TABLE tasks (
    id                TEXT PRIMARY KEY,
    handler           TEXT NOT NULL,
    type              TEXT NOT NULL,
    unique_name       TEXT NOT NULL,
    description       TEXT NOT NULL,
    parent_name       TEXT,
    launcher          TEXT NOT NULL,
    target_id         TEXT,
    target_type       TEXT,
    target_name       TEXT,
    created           TEXT NOT NULL,
    modified          TEXT NOT NULL,
    launched          TEXT,
    completed         TEXT,
    completion_status TEXT,
    returns           TEXT NOT NULL DEFAULT '[]',
    attributes        TEXT NOT NULL DEFAULT '{}',
    progress          TEXT,
    percent_complete  INTEGER NOT NULL DEFAULT 0,
    state             TEXT NOT NULL,
    arguments         TEXT NOT NULL DEFAULT '{}',
    parent_id         TEXT,
    priority          INTEGER NOT NULL DEFAULT 0,
    run_at            TEXT NOT NULL,
    attempts          INTEGER NOT NULL DEFAULT 0,
    max_attempts      INTEGER NOT NULL DEFAULT 3,
    timeout           REAL,
    lease_owner       TEXT,
    lease_expires     TEXT,
    idempotency_key   TEXT,
    deleted_at        TEXT,
    version           INTEGER NOT NULL DEFAULT 1,
    CHECK (state IN ('queued', 'running', 'cancel_requested', 'succeeded', 'failed',
                     'cancelled', 'dead')),
    CHECK ((completion_status IS NULL) = (state IN ('queued', 'running', 'cancel_requested'))),
    CHECK (percent_complete BETWEEN 0 AND 100)
);

-- claim: due queued tasks by priority, then due time
CREATE INDEX tasks_due ON tasks (priority DESC, run_at) WHERE state = 'queued';
-- recovery: running tasks by lease expiry
CREATE INDEX tasks_leases ON tasks (lease_expires) WHERE state IN ('running', 'cancel_requested');
-- v2024 lists: pending (completionStatus null) and completed, by created; filters by
-- completionStatus, type, sourceId (target) and launcher, each ordered by created
CREATE INDEX tasks_pending_created ON tasks (created) WHERE completion_status IS NULL;
CREATE INDEX tasks_status_created ON tasks (completion_status, created);
CREATE INDEX tasks_created ON tasks (created);
CREATE INDEX tasks_type_created ON tasks (type, created);
CREATE INDEX tasks_target_created ON tasks (target_id, created) WHERE target_id IS NOT NULL;
CREATE INDEX tasks_launcher_created ON tasks (launcher, created);
CREATE INDEX tasks_handler_created ON tasks (handler, created);
CREATE INDEX tasks_parent ON tasks (parent_id) WHERE parent_id IS NOT NULL;
CREATE UNIQUE INDEX tasks_idempotency ON tasks (launcher, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE TABLE task_messages (
    seq        INTEGER PRIMARY KEY,
    task_id    TEXT NOT NULL,
    type       TEXT NOT NULL CHECK (type IN ('INFO', 'WARN', 'ERROR')),
    key        TEXT NOT NULL,
    text       TEXT NOT NULL,
    locale     TEXT NOT NULL,
    parameters TEXT
);
CREATE INDEX task_messages_task ON task_messages (task_id, seq);

CREATE TABLE definitions (
    name         TEXT PRIMARY KEY,
    summary      TEXT NOT NULL,
    schema       TEXT NOT NULL,
    max_attempts INTEGER,
    timeout      REAL,
    updated      TEXT NOT NULL
);

CREATE TABLE api_clients (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    scopes      TEXT NOT NULL,
    owner       TEXT NOT NULL,
    created     TEXT NOT NULL,
    revoked     TEXT
);

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
