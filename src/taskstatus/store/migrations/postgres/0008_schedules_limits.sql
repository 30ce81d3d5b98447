-- Schedules and their firings, and the limits on handlers (taskstatus.schedules,
-- taskstatus.limits_policy): the tables of the SQLite schema. A firing is one row per
-- (schedule, firing time): whichever node inserts it creates the firing's task in the same
-- transaction; a rival's insert waits for that commit, then finds the key taken.

CREATE TABLE schedules (
    name         text COLLATE "C" PRIMARY KEY,
    handler      text COLLATE "C" NOT NULL,
    arguments    jsonb NOT NULL DEFAULT '{}',
    cron         text COLLATE "C",
    every        double precision,
    timezone     text COLLATE "C" NOT NULL DEFAULT 'UTC',
    missed       text COLLATE "C" NOT NULL DEFAULT 'skip' CHECK (missed IN ('skip', 'all')),
    overlap      text COLLATE "C" NOT NULL DEFAULT 'allow' CHECK (overlap IN ('allow', 'skip')),
    paused       boolean NOT NULL DEFAULT false,
    next_fire    timestamptz,
    last_fire    timestamptz,
    last_task_id text COLLATE "C",
    created      timestamptz NOT NULL,
    modified     timestamptz NOT NULL,
    version      integer NOT NULL DEFAULT 1,
    CHECK ((cron IS NULL) <> (every IS NULL))
);
CREATE INDEX schedules_due ON schedules (next_fire) WHERE next_fire IS NOT NULL;

CREATE TABLE schedule_firings (
    schedule  text COLLATE "C" NOT NULL,
    fire_time timestamptz NOT NULL,
    task_id   text COLLATE "C",  -- NULL: skipped (overlap)
    fired     timestamptz NOT NULL,
    PRIMARY KEY (schedule, fire_time)
);

CREATE TABLE handler_limits (
    handler     text COLLATE "C" PRIMARY KEY,
    concurrency integer,
    rate        double precision,
    burst       double precision,
    limit_key   text COLLATE "C",
    declared    boolean NOT NULL DEFAULT false,  -- true: the values a handler's code declares
    modified    timestamptz NOT NULL
);

-- The tasks of limited handlers that a claim started, by key; a row whose task no longer
-- runs is removed by the next claim of the handler (so no write path has to remember them,
-- and the finish of an unlimited task costs nothing more).
CREATE TABLE limit_slots (
    handler text COLLATE "C" NOT NULL,
    task_id text COLLATE "C" NOT NULL,
    key     text COLLATE "C" NOT NULL,
    PRIMARY KEY (handler, task_id)
);

-- Token buckets of rate limits, by key: tokens left at time `at`.
CREATE TABLE limit_buckets (
    handler text COLLATE "C" NOT NULL,
    key     text COLLATE "C" NOT NULL,
    tokens  double precision NOT NULL,
    at      timestamptz NOT NULL,
    PRIMARY KEY (handler, key)
);

-- The claim's pick leaves limited handlers to the limited claim (PostgresStore), which counts
-- their running tasks under the lock of their handler_limits row. The handlers are filtered
-- here, by key lookups under the function's settings, so the pick's plan stays the one of
-- 0003 and the claim statement gains no scan. taskstatus_pick is the same pick for one
-- limited handler, without the filter.
CREATE OR REPLACE FUNCTION taskstatus_due(text[], integer) RETURNS SETOF text
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = off SET enable_sort = off SET enable_bitmapscan = off
    SET enable_hashjoin = off SET enable_mergejoin = off
AS $$
DECLARE
    unlimited text[] := ARRAY(
        SELECT h FROM unnest($1) h
        WHERE NOT EXISTS (SELECT FROM handler_limits l WHERE l.handler = h));
BEGIN
    RETURN QUERY
    SELECT t.id FROM task_queue q JOIN tasks t ON t.id = q.id
    WHERE q.run_at <= now() AND q.handler = ANY(unlimited) AND t.state = 'queued'
    ORDER BY q.priority DESC, q.run_at
    LIMIT $2
    FOR UPDATE OF t SKIP LOCKED;
END
$$;

CREATE FUNCTION taskstatus_pick(text[], integer) RETURNS SETOF text
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = off SET enable_sort = off SET enable_bitmapscan = off
    SET enable_hashjoin = off SET enable_mergejoin = off
AS $$
BEGIN
    RETURN QUERY
    SELECT t.id FROM task_queue q JOIN tasks t ON t.id = q.id
    WHERE q.run_at <= now() AND q.handler = ANY($1) AND t.state = 'queued'
    ORDER BY q.priority DESC, q.run_at
    LIMIT $2
    FOR UPDATE OF t SKIP LOCKED;
END
$$;
