-- Schedules and their firings, and the limits on handlers (taskstatus.schedules,
-- taskstatus.limits_policy). A firing is one row per (schedule, firing time): whichever node
-- inserts it creates the firing's task in the same transaction; any other finds the key taken.

CREATE TABLE schedules (
    name         TEXT PRIMARY KEY,
    handler      TEXT NOT NULL,
    arguments    TEXT NOT NULL DEFAULT '{}',
    cron         TEXT,
    every        REAL,
    timezone     TEXT NOT NULL DEFAULT 'UTC',
    missed       TEXT NOT NULL DEFAULT 'skip' CHECK (missed IN ('skip', 'all')),
    overlap      TEXT NOT NULL DEFAULT 'allow' CHECK (overlap IN ('allow', 'skip')),
    paused       INTEGER NOT NULL DEFAULT 0,
    next_fire    TEXT,
    last_fire    TEXT,
    last_task_id TEXT,
    created      TEXT NOT NULL,
    modified     TEXT NOT NULL,
    version      INTEGER NOT NULL DEFAULT 1,
    CHECK ((cron IS NULL) <> (every IS NULL))
);
CREATE INDEX schedules_due ON schedules (next_fire) WHERE next_fire IS NOT NULL;

CREATE TABLE schedule_firings (
    schedule  TEXT NOT NULL,
    fire_time TEXT NOT NULL,
    task_id   TEXT,          -- NULL: skipped (overlap)
    fired     TEXT NOT NULL,
    PRIMARY KEY (schedule, fire_time)
);

CREATE TABLE handler_limits (
    handler     TEXT PRIMARY KEY,
    concurrency INTEGER,
    rate        REAL,
    burst       REAL,
    limit_key   TEXT,
    declared    INTEGER NOT NULL DEFAULT 0,  -- 1: the values a handler's code declares
    modified    TEXT NOT NULL
);

-- The tasks of limited handlers that a claim started, by key; a row whose task no longer
-- runs is removed by the next claim of the handler (so no write path has to remember them).
CREATE TABLE limit_slots (
    handler TEXT NOT NULL,
    task_id TEXT NOT NULL,
    key     TEXT NOT NULL,
    PRIMARY KEY (handler, task_id)
);

-- Token buckets of rate limits, by key: tokens left at time `at`.
CREATE TABLE limit_buckets (
    handler TEXT NOT NULL,
    key     TEXT NOT NULL,
    tokens  REAL NOT NULL,
    at      TEXT NOT NULL,
    PRIMARY KEY (handler, key)
);
