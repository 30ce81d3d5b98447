-- Tasks, their messages, handler definitions, API clients and cluster settings: the tables of
-- the SQLite schema, with timestamptz times and jsonb JSON. Text that is sorted or compared is
-- COLLATE "C" (byte order, ASCII-only case folding for ILIKE), as SQLite's BINARY is, so both
-- backends sort and match the same way whatever the database's locale.

CREATE TABLE tasks (
    id                text COLLATE "C" PRIMARY KEY,
    handler           text COLLATE "C" NOT NULL,
    type              text COLLATE "C" NOT NULL,
    unique_name       text COLLATE "C" NOT NULL,
    description       text COLLATE "C" NOT NULL,
    parent_name       text COLLATE "C",
    launcher          text COLLATE "C" NOT NULL,
    target_id         text COLLATE "C",
    target_type       text COLLATE "C",
    target_name       text COLLATE "C",
    created           timestamptz NOT NULL,
    modified          timestamptz NOT NULL,
    launched          timestamptz,
    completed         timestamptz,
    completion_status text COLLATE "C",
    returns           jsonb NOT NULL DEFAULT '[]',
    attributes        jsonb NOT NULL DEFAULT '{}',
    progress          text COLLATE "C",
    percent_complete  integer NOT NULL DEFAULT 0,
    state             text COLLATE "C" NOT NULL,
    arguments         jsonb NOT NULL DEFAULT '{}',
    parent_id         text COLLATE "C",
    priority          integer NOT NULL DEFAULT 0,
    run_at            timestamptz NOT NULL,
    attempts          integer NOT NULL DEFAULT 0,
    max_attempts      integer NOT NULL DEFAULT 3,
    timeout           double precision,
    lease_owner       text COLLATE "C",
    lease_expires     timestamptz,
    idempotency_key   text COLLATE "C",
    deleted_at        timestamptz,
    version           integer NOT NULL DEFAULT 1,
    CHECK (state IN ('queued', 'running', 'cancel_requested', 'succeeded', 'failed',
                     'cancelled', 'dead')),
    CHECK ((completion_status IS NULL) = (state IN ('queued', 'running', 'cancel_requested'))),
    CHECK (percent_complete BETWEEN 0 AND 100)
) WITH (fillfactor = 50);
-- No index of `tasks` names a column that a claim, a heartbeat or a progress report changes
-- (state, lease, attempts, progress, modified, version), so PostgreSQL makes those updates
-- heap-only (HOT): no index entries written. The fillfactor leaves room on each page for the
-- new row versions. What a claim needs ordered lives in task_queue, below.

-- recovery: the tasks in flight (no completion status yet), among which it looks for
-- expired leases; neither the key nor the predicate changes while a task runs
CREATE INDEX tasks_inflight ON tasks (id) WHERE completion_status IS NULL;
-- v2024 lists: pending (completionStatus null) and completed, by created; filters by
-- completionStatus, type, sourceId (target), launcher and handler, each ordered by created.
-- The id ends each key because it breaks ties in every ORDER BY (store/sqlfilter.py), so a
-- page is read straight off the index. The lists leave deleted tasks (history) out, and so do
-- these indexes: smaller, and counts become index-only scans.
CREATE INDEX tasks_pending_created ON tasks (created, id)
    WHERE completion_status IS NULL AND deleted_at IS NULL;
CREATE INDEX tasks_status_created ON tasks (completion_status, created, id)
    WHERE deleted_at IS NULL;
CREATE INDEX tasks_type_created ON tasks (type, created, id) WHERE deleted_at IS NULL;
CREATE INDEX tasks_target_created ON tasks (target_id, created, id)
    WHERE target_id IS NOT NULL AND deleted_at IS NULL;
CREATE INDEX tasks_launcher_created ON tasks (launcher, created, id) WHERE deleted_at IS NULL;
CREATE INDEX tasks_handler_created ON tasks (handler, created, id) WHERE deleted_at IS NULL;
-- lists by created with history included (v2 "historized"), and purge by age
CREATE INDEX tasks_created ON tasks (created, id);
CREATE INDEX tasks_parent ON tasks (parent_id) WHERE parent_id IS NOT NULL;
CREATE UNIQUE INDEX tasks_idempotency ON tasks (launcher, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- The queued tasks, in the order claims take them: a row per task that is queued and not
-- deleted. New tasks bring their rows; the trigger below keeps them through every update.
CREATE TABLE task_queue (
    id       text COLLATE "C" PRIMARY KEY,
    handler  text COLLATE "C" NOT NULL,
    priority integer NOT NULL,
    run_at   timestamptz NOT NULL
);
CREATE INDEX task_queue_due ON task_queue (priority DESC, run_at);

CREATE FUNCTION taskstatus_sync_queue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state = 'queued' AND NEW.deleted_at IS NULL THEN
        INSERT INTO task_queue (id, handler, priority, run_at)
        VALUES (NEW.id, NEW.handler, NEW.priority, NEW.run_at)
        ON CONFLICT (id) DO UPDATE SET priority = excluded.priority, run_at = excluded.run_at;
    ELSIF TG_OP = 'UPDATE' AND OLD.state = 'queued' THEN
        DELETE FROM task_queue WHERE id = OLD.id;
    END IF;
    RETURN NULL;
END
$$;

-- Inserts add their queue rows themselves (create_tasks, one statement for a batch); this
-- trigger keeps the queue right through every update, whatever makes it.
CREATE TRIGGER tasks_sync_queue
    AFTER UPDATE OF state, priority, run_at, deleted_at ON tasks
    FOR EACH ROW EXECUTE FUNCTION taskstatus_sync_queue();

-- The primary key (task_id, seq) is also the index that reads a task's messages in order.
CREATE TABLE task_messages (
    task_id    text COLLATE "C" NOT NULL,
    seq        bigint GENERATED ALWAYS AS IDENTITY,
    type       text COLLATE "C" NOT NULL CHECK (type IN ('INFO', 'WARN', 'ERROR')),
    key        text NOT NULL,
    text       text NOT NULL,
    locale     text NOT NULL,
    parameters jsonb,
    PRIMARY KEY (task_id, seq)
);

CREATE TABLE definitions (
    name         text COLLATE "C" PRIMARY KEY,
    summary      jsonb NOT NULL,
    schema       jsonb NOT NULL,
    max_attempts integer,
    timeout      double precision,
    updated      timestamptz NOT NULL
);

CREATE TABLE api_clients (
    id          text COLLATE "C" PRIMARY KEY,
    name        text NOT NULL,
    secret_hash text NOT NULL,
    scopes      jsonb NOT NULL,
    owner       text NOT NULL,
    created     timestamptz NOT NULL,
    revoked     timestamptz
);

CREATE TABLE settings (
    key   text COLLATE "C" PRIMARY KEY,
    value text NOT NULL
);
