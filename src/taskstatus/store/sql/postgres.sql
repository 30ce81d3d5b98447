-- PostgreSQL queries, by name, with psycopg's %(name)s parameters. {columns} is the task column
-- list below; {from:STATE} is the list of states the lifecycle (taskstatus.model.sources) allows
-- STATE to be entered from, {leased} the states a worker holds a lease in, {pending} and
-- {terminal} what they say. {messages} (substituted by postgres.py) is the messages block: new
-- messages, one row each, in order.
--
-- Batches are one JSON document each (an array of objects, one per row, read with
-- jsonb_to_recordset), so a batch of any size is one statement (one round trip) and one
-- parameter, which orjson encodes at C speed (psycopg's array dumpers encode element by
-- element in Python: they were most of a worker's and a submitter's time); each statement
-- text is fixed. (A large submit of plain tasks goes by binary COPY instead: copy_tasks.)
-- Times that decide who runs what (due, leases) come from the database clock, which every
-- node shares. `pg_notify` wakes idle workers; it takes effect when the statement's
-- transaction commits, and a transaction delivers a notification once however often it asks.

-- name: columns
-- The definition summary as text: every task of a handler has the same one, which
-- rows.summary_of parses once and caches. {run_columns} is this list with NULL in place of
-- {column_definition} and {column_messages} (sqlfiles.py): what a claim returns.
tasks.id, tasks.handler, {column_definition} AS definition,
tasks.type, tasks.unique_name, tasks.description, tasks.parent_name, tasks.launcher,
tasks.target_id, tasks.target_type, tasks.target_name, tasks.created, tasks.modified,
tasks.launched, tasks.completed, tasks.completion_status, tasks.returns, tasks.attributes,
tasks.progress, tasks.percent_complete, tasks.state, tasks.arguments, tasks.parent_id,
tasks.priority, tasks.run_at, tasks.attempts, tasks.max_attempts, tasks.timeout,
tasks.lease_owner, tasks.lease_expires, tasks.idempotency_key, tasks.deleted_at, tasks.version,
{column_messages} AS messages

-- name: column_definition
(SELECT d.summary::text FROM definitions d WHERE d.name = tasks.handler)

-- name: column_messages
(SELECT coalesce(
        json_agg(json_build_array(m.type, m.key, m.text, m.locale, m.parameters) ORDER BY m.seq),
        '[]')
   FROM task_messages m WHERE m.task_id = tasks.id)

-- name: event_log
-- {event_log}: whether the statements that write their own events (`claim`, `finish`) write
-- them: always, unless the setting taskstatus.event_log is 'off' (bench/events.py measures the
-- store without its event log so: it drops the triggers and turns this off). No row is read to
-- decide it: the planner makes it a one-time filter.
current_setting('taskstatus.event_log', true) IS DISTINCT FROM 'off'

-- name: messages
jsonb_to_recordset(%(messages)s::jsonb)
    AS m(task_id text, type text, key text, text text, locale text, parameters jsonb, ord integer)

-- name: create_tasks
-- Inserts the batch, its messages and its queue rows; answers, per input row in order,
-- whether it was stored (if not, its idempotency key was taken: the caller reads that task).
WITH batch AS (
    SELECT * FROM jsonb_to_recordset(%(tasks)s::jsonb) AS i(
        id text, handler text, type text, unique_name text, description text, parent_name text,
        launcher text, target_id text, target_type text, target_name text, created timestamptz,
        modified timestamptz, launched timestamptz, completed timestamptz,
        completion_status text, returns jsonb, attributes jsonb, progress text,
        percent_complete integer, state text, arguments jsonb, parent_id text, priority integer,
        run_at timestamptz, attempts integer, max_attempts integer, timeout float8,
        lease_owner text, lease_expires timestamptz, idempotency_key text,
        deleted_at timestamptz, version integer, ord integer)
),
inserted AS (
    INSERT INTO tasks (
        id, handler, type, unique_name, description, parent_name, launcher, target_id,
        target_type, target_name, created, modified, launched, completed, completion_status,
        returns, attributes, progress, percent_complete, state, arguments, parent_id, priority,
        run_at, attempts, max_attempts, timeout, lease_owner, lease_expires, idempotency_key,
        deleted_at, version)
    SELECT
        id, handler, type, unique_name, description, parent_name, launcher, target_id,
        target_type, target_name, created, modified, launched, completed, completion_status,
        returns, attributes, progress, percent_complete, state, arguments, parent_id, priority,
        run_at, attempts, max_attempts, timeout, lease_owner, lease_expires, idempotency_key,
        deleted_at, version
    FROM batch
    -- keyed rows in one order in every batch, so two batches sharing keys cannot deadlock
    ORDER BY launcher, idempotency_key, ord
    ON CONFLICT (launcher, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING id
),
added AS (
    INSERT INTO task_messages (task_id, type, key, text, locale, parameters)
    SELECT m.task_id, m.type, m.key, m.text, m.locale, m.parameters
    FROM {messages}
    WHERE m.task_id IN (SELECT id FROM inserted)
    ORDER BY m.ord
),
queued AS (
    -- the queue rows of the new tasks, in one statement (the trigger keeps them for updates)
    INSERT INTO task_queue (id, handler, priority, run_at)
    SELECT batch.id, batch.handler, batch.priority, batch.run_at
    FROM batch JOIN inserted ON inserted.id = batch.id
    WHERE batch.state = 'queued' AND batch.deleted_at IS NULL
)
SELECT inserted.id IS NOT NULL AS stored,
       (SELECT pg_notify('taskstatus_work', '') WHERE EXISTS (SELECT FROM inserted)) AS woke
FROM batch
LEFT JOIN inserted ON inserted.id = batch.id
ORDER BY batch.ord

-- name: copy_tasks
-- The bulk form of create_tasks (postgres.py `_Copy`): a large batch without idempotency keys
-- or messages, of one launcher, in binary COPY rows, so the server parses no JSON document and
-- runs no text input function; its queue rows follow in copy_queue, and wake_workers, in one
-- transaction. {task_columns} is rows.TASK_COLUMNS. The triggers of an INSERT fire for a COPY
-- FROM too (AFTER STATEMENT, with its transition table): the same event log and counts.
COPY tasks ({task_columns}) FROM STDIN (FORMAT BINARY)

-- name: copy_queue
COPY task_queue (id, handler, priority, run_at) FROM STDIN (FORMAT BINARY)

-- name: wake_workers
SELECT pg_notify('taskstatus_work', '')

-- name: get_task
SELECT {columns} FROM tasks
WHERE tasks.id = %(id)s AND (tasks.deleted_at IS NULL OR %(include_deleted)s)

-- name: get_by_idempotency_key
SELECT {columns} FROM tasks
WHERE tasks.launcher = %(launcher)s AND tasks.idempotency_key = %(key)s

-- name: update_task
-- {assignments} is the changed columns (postgres.py); the version guard makes it a no-op when
-- another writer got there first, and then the messages are not added either.
WITH changed AS (
    UPDATE tasks SET {assignments}
    WHERE id = %(_id)s AND version = %(_version)s
    RETURNING id
),
added AS (
    INSERT INTO task_messages (task_id, type, key, text, locale, parameters)
    SELECT m.task_id, m.type, m.key, m.text, m.locale, m.parameters
    FROM {messages}
    WHERE m.task_id IN (SELECT id FROM changed)
    ORDER BY m.ord
)
SELECT count(*) FROM changed

-- name: children
SELECT {columns} FROM tasks
WHERE tasks.parent_id = %(id)s AND tasks.deleted_at IS NULL
ORDER BY tasks.created, tasks.id

-- name: tree_for_update
-- The task and its live descendants, locked until the deletion commits.
WITH RECURSIVE tree(id) AS (
    SELECT %(id)s::text COLLATE "C"
    UNION
    SELECT c.id FROM tasks c JOIN tree ON c.parent_id = tree.id WHERE c.deleted_at IS NULL
)
SELECT {columns} FROM tasks WHERE tasks.id IN (SELECT id FROM tree)
FOR UPDATE OF tasks

-- name: claim
-- The due tasks in queue order, locked: taskstatus_due (migration 0003) picks them with a plan
-- that does not depend on table statistics. Updating the state is a heap-only update of
-- `tasks`; the same statement deletes the claimed tasks' queue rows (queued -> running is the
-- one change the queue trigger leaves to the claim, 0006), and those it missed in a snapshot
-- taken after the update (0017), so a queue row goes exactly when its task is claimed.
-- It is a worker's bookkeeping (`lax` below) and sets that itself, in the pick's subquery, so
-- before the update's end, where the counts' trigger reads it: the plain claim is this one
-- statement in its own transaction, one message each way (issue 17).
WITH lax AS ({lax}),
claimed AS (
    UPDATE tasks SET
        state = 'running', lease_owner = %(worker)s,
        lease_expires = now() + %(lease)s * interval '1 second',
        attempts = attempts + 1, launched = coalesce(launched, now()), modified = now(),
        -- the launched event's number (0015); the sign: last_seq is kept (0016)
        version = version + 1, events_version = -1 - version,
        last_seq = taskstatus_row_last_seq(id, version, events_version, last_seq, event_kinds) + 1,
        event_kinds = NULL
    WHERE tasks.id = ANY(ARRAY(SELECT taskstatus_due(%(handlers)s::text[], %(limit)s) FROM lax))
      AND tasks.state IN ({from:running})  -- key lookups, never a join over tasks
    RETURNING {run_columns}, tasks.last_seq
),
dequeued AS (
    DELETE FROM task_queue WHERE id = ANY(ARRAY(SELECT id FROM claimed)) RETURNING id
),
events AS (
    -- the claim's one event (migration 0010): queued -> running changes nothing else; its
    -- number is the row's last seq, which the claim moved one on (migration 0015)
    INSERT INTO task_events (task_id, seq, kind, version, at, doc)  -- its data as text (0019)
    SELECT c.id, c.last_seq, 'launched', c.version, c.modified,
           taskstatus_launched_doc(c.attempts, c.launched)
    FROM claimed c
    WHERE {event_log}
    RETURNING task_id, seq
),
after AS (
    -- once the claim has rows (the join below reads this only then), in one row of two
    -- scalar subqueries, so the statement's plan stays small (each node costs its executor
    -- start-up at every claim): the NOTIFY of their events, and the dequeue of the queue rows
    -- the DELETE missed: a queue row inserted since the statement's snapshot, by a hand-back
    -- of the task the pick then saw queued (0017), deleted in a snapshot taken now (the
    -- function's), only when some are missed (the others it finds gone)
    SELECT (SELECT taskstatus_notify_events(array_agg(task_id || ':' || seq)) FROM events
            HAVING count(*) > 0) AS noted,
           (SELECT taskstatus_dequeue(k.ids) FROM (SELECT ARRAY(SELECT id FROM claimed) AS ids) k
            WHERE cardinality(k.ids) > (SELECT count(*) FROM dequeued)) AS missed
)
-- the task columns ({run_columns}' names), not last_seq
SELECT c.id, c.handler, c.definition, c.type, c.unique_name, c.description, c.parent_name,
       c.launcher, c.target_id, c.target_type, c.target_name, c.created, c.modified, c.launched,
       c.completed, c.completion_status, c.returns, c.attributes, c.progress, c.percent_complete,
       c.state, c.arguments, c.parent_id, c.priority, c.run_at, c.attempts, c.max_attempts,
       c.timeout, c.lease_owner, c.lease_expires, c.idempotency_key, c.deleted_at, c.version,
       c.messages
FROM claimed c LEFT JOIN after ON true

-- name: lax
-- What a worker's bookkeeping transaction (a claim, a heartbeat, a report: PostgresStore._lax)
-- sets first: a commit that does not wait for the disk, and that none of its statements
-- changes a task count (no completion status, creation time or deletion changes in a claim,
-- a heartbeat, a report or a hold note), so the counts' update trigger is skipped (migration
-- 0011). (Not generic plans for its statements: one made while `tasks` was small would be
-- kept as it grows; the picks keep theirs, 0009.)
SELECT set_config('synchronous_commit', 'off', true),
       set_config('taskstatus.counts', 'unchanged', true)

-- name: vacuum_queue
-- (postgres.py runs it after many claims; it needs a connection outside any transaction)
VACUUM (SKIP_LOCKED) task_queue

-- name: heartbeat
-- What comes back is what this worker still holds; sort_heartbeat calls the rest lost.
UPDATE tasks SET lease_expires = now() + %(lease)s * interval '1 second'
WHERE lease_owner = %(worker)s AND state IN ({leased}) AND id = ANY(%(ids)s::text[])
RETURNING id, state, lease_owner

-- name: report
WITH r AS (
    SELECT * FROM jsonb_to_recordset(%(reports)s::jsonb)
        AS r(id text, progress text, percent_complete integer, attributes jsonb, returns jsonb,
             attempt integer)
),
reported AS (
    UPDATE tasks SET
        progress = r.progress, percent_complete = r.percent_complete,
        attributes = coalesce(r.attributes, tasks.attributes),
        returns = coalesce(r.returns, tasks.returns),
        modified = now(), version = tasks.version + 1
    FROM r
    WHERE tasks.id = ANY(%(id)s::text[]) AND tasks.id = r.id  -- key lookups (see finish)
      AND tasks.lease_owner = %(worker)s AND tasks.state IN ({leased})
      AND (r.attempt IS NULL OR tasks.attempts = r.attempt)  -- fenced by the claim's attempt
    RETURNING tasks.id
)
INSERT INTO task_messages (task_id, type, key, text, locale, parameters)
SELECT m.task_id, m.type, m.key, m.text, m.locale, m.parameters
FROM {messages}
WHERE m.task_id IN (SELECT id FROM reported)
ORDER BY m.ord

-- name: finish
-- Each outcome is guarded by the lease and by the states its target may be entered from
-- (`sources`, a comma-separated list per row); answers the ids whose outcome was stored.
-- {finish_messages} is the messages' CTE below; postgres.py leaves it out of the statement
-- of a batch without messages (`finish_bare`: no INSERT into task_messages to set up, no
-- empty document to parse; bench/pg_finish_cost.py).
WITH o AS (
    SELECT * FROM jsonb_to_recordset(%(outcomes)s::jsonb)
        AS o(id text, state text, completion_status text, progress text,
             percent_complete integer, attributes jsonb, returns jsonb, run_at timestamptz,
             sources text, attempt integer, messages integer)
),
finished AS (
    UPDATE tasks t SET
        state = o.state, completion_status = o.completion_status,
        completed = CASE WHEN o.completion_status IS NULL THEN t.completed ELSE now() END,
        progress = coalesce(o.progress, t.progress),
        percent_complete = coalesce(o.percent_complete, t.percent_complete),
        attributes = coalesce(o.attributes, t.attributes),
        returns = coalesce(o.returns, t.returns),
        run_at = coalesce(o.run_at, t.run_at), lease_owner = NULL, lease_expires = NULL,
        modified = now(), version = t.version + 1,
        -- The statement writes the change's events itself (below; migration 0010) when a
        -- leased task ends or goes back to the queue, all a worker's outcomes do: such a
        -- change has only these kinds of taskstatus_task_changed's (launched,
        -- cancel_requested and updated need a leased target; released fewer attempts, deleted
        -- a deletion), worked out by its rules. `t.` is the row before the change. Any
        -- other change leaves them to the trigger. last_seq (migration 0015): the last seq
        -- before this change's events, and its messages (their trigger numbers theirs after
        -- the statement's); the events of event_kinds (one per kind, but an end's progress,
        -- which rides on its `completed`) come on top. Else NULL: the row vouches for
        -- nothing after the trigger's events (0016: kept only with events_version < 0).
        last_seq = CASE WHEN taskstatus_run_ends(o.state, t.state) THEN
                taskstatus_row_last_seq(t.id, t.version, t.events_version,
                                        t.last_seq, t.event_kinds)
              + coalesce(o.messages, 0) END,
        events_version = CASE WHEN taskstatus_run_ends(o.state, t.state)
                              THEN -1 - t.version END,  -- (0016)
        event_kinds =
            CASE WHEN coalesce(o.progress, t.progress) IS DISTINCT FROM t.progress
                   OR coalesce(o.percent_complete, t.percent_complete)
                      <> t.percent_complete THEN 1 ELSE 0 END
          + CASE WHEN coalesce(o.attributes, t.attributes) IS DISTINCT FROM t.attributes
                   OR coalesce(o.returns, t.returns) IS DISTINCT FROM t.returns
                 THEN 2 ELSE 0 END
          + CASE WHEN o.state = 'queued'
                  AND coalesce(o.run_at, t.run_at) IS DISTINCT FROM t.run_at
                 THEN 16 ELSE 0 END
          + CASE WHEN o.state IN ('queued', 'dead')
                  AND coalesce(o.run_at, t.run_at) IS NOT DISTINCT FROM t.run_at
                  AND t.lease_expires < now() THEN 32 ELSE 0 END
          + CASE WHEN o.completion_status IS NOT NULL AND t.completion_status IS NULL
                 THEN 128 ELSE 0 END
    FROM o
    -- id = ANY(...) lets the planner look the rows up by key; a join alone got a
    -- sequential scan of every task, history included
    WHERE t.id = ANY(%(id)s::text[]) AND t.id = o.id AND t.lease_owner = %(worker)s
      AND t.state = ANY(string_to_array(o.sources, ','))
      AND (o.attempt IS NULL OR t.attempts = o.attempt)  -- a stale run never overwrites
    RETURNING t.id, t.state, events_version, event_kinds, version,
              modified, t.progress, t.percent_complete, t.attributes,
              t.returns, attempts, t.run_at, t.completion_status,
              completed, last_seq, coalesce(o.messages, 0) AS messages
),{finish_messages}
numbered AS NOT MATERIALIZED (
    -- the first seq of this change's events (0015), and which kinds the change has (0 or 1
    -- each) in the documented order: each present kind takes the next seq, so its seq is the
    -- first one plus the present kinds before it (set-based below, one filtered scan per
    -- kind: no lateral subquery per row, no window sort; about 7 k instructions a task
    -- fewer, bench/pg_event_log_cost.py). Not a copy of `finished` (which a data-modifying
    -- CTE stores anyway): each scan below reads that and filters it, 5.3 k a task fewer.
    SELECT *, last_seq - messages + 1 AS seq1,
           (event_kinds & 129 = 1)::int AS p,  -- an end's progress rides on its `completed`
           (event_kinds & 2 <> 0)::int AS a, (event_kinds & 16 <> 0)::int AS r,
           (event_kinds & 32 <> 0)::int AS x
    FROM finished
    WHERE events_version IS NOT NULL AND event_kinds <> 0 AND {event_log}
),
events AS (
    INSERT INTO task_events (task_id, seq, kind, version, at, doc)  -- JSON text (0019)
    SELECT id, seq1, 'progress', version, modified,
           json_build_object('progress', progress, 'percentComplete', percent_complete)::text
    FROM numbered WHERE p = 1
    UNION ALL
    SELECT id, seq1 + p, 'attributes', version, modified,
           json_build_object('attributes', attributes, 'returns', returns)::text
    FROM numbered WHERE a = 1
    UNION ALL
    SELECT id, seq1 + p + a, 'retried', version, modified,
           json_build_object('attempt', attempts, 'runAt', run_at)::text
    FROM numbered WHERE r = 1
    UNION ALL
    SELECT id, seq1 + p + a + r, 'lease_lost', version, modified,
           json_build_object('attempt', attempts, 'state', state)::text
    FROM numbered WHERE x = 1
    UNION ALL
    SELECT id, seq1 + p + a + r + x, 'completed', version, modified,
           taskstatus_completed_doc(state, completion_status, completed, progress,
                                    percent_complete)
    FROM numbered WHERE event_kinds & 128 <> 0
),
noted AS (
    SELECT taskstatus_notify_events(array_agg(id || ':' || seq1)) FROM numbered
    HAVING count(*) > 0
)
SELECT id,
       (SELECT pg_notify('taskstatus_work', '')
        WHERE EXISTS (SELECT FROM finished WHERE state = 'queued')) AS woke
FROM finished LEFT JOIN noted ON true

-- name: finish_messages
-- (their events: the messages' trigger, after this statement's, before `completed`)
added AS (
    INSERT INTO task_messages (task_id, type, key, text, locale, parameters)
    SELECT task_id, type, key, text, locale, parameters
    FROM {messages}
    WHERE m.task_id IN (SELECT id FROM finished)
    ORDER BY m.ord
),

-- name: release
WITH requeued AS (
    UPDATE tasks SET
        state = 'queued', lease_owner = NULL, lease_expires = NULL,
        attempts = greatest(attempts - 1, 0), modified = now(), version = version + 1
    WHERE lease_owner = %(worker)s AND state = 'running' AND 'running' IN ({from:queued})
      AND id = ANY(%(ids)s::text[])
    RETURNING id
),
cancelled AS (
    UPDATE tasks SET
        state = 'cancelled', completion_status = 'TERMINATED', completed = now(),
        lease_owner = NULL, lease_expires = NULL, modified = now(), version = version + 1
    WHERE lease_owner = %(worker)s AND state = 'cancel_requested'
      AND 'cancel_requested' IN ({from:cancelled}) AND id = ANY(%(ids)s::text[])
)
SELECT pg_notify('taskstatus_work', '') WHERE EXISTS (SELECT FROM requeued)

-- name: recover
-- Expired leases: requeued while attempts are left, else dead; a cancel request wins. The
-- tasks are found among those in flight (tasks_inflight: completion_status IS NULL). A lease
-- is judged only once it stayed expired for `grace` seconds, counted from the server's
-- start as well: after a restart the workers that were cut off get that long to renew.
WITH requeued AS (
    UPDATE tasks SET
        state = 'queued', lease_owner = NULL, lease_expires = NULL, modified = now(),
        version = version + 1
    WHERE completion_status IS NULL AND state = 'running' AND 'running' IN ({from:queued})
      AND lease_expires < now() - %(grace)s * interval '1 second'
      AND pg_postmaster_start_time() < now() - %(grace)s * interval '1 second'
      AND attempts < max_attempts
    RETURNING id, attempts, max_attempts
),
dead AS (
    UPDATE tasks SET
        state = 'dead', completion_status = 'TEMPERROR', completed = now(), lease_owner = NULL,
        lease_expires = NULL, modified = now(), version = version + 1
    WHERE completion_status IS NULL AND state = 'running' AND 'running' IN ({from:dead})
      AND lease_expires < now() - %(grace)s * interval '1 second'
      AND pg_postmaster_start_time() < now() - %(grace)s * interval '1 second'
      AND attempts >= max_attempts
    RETURNING id, attempts, max_attempts
),
cancelled AS (
    UPDATE tasks SET
        state = 'cancelled', completion_status = 'TERMINATED', completed = now(),
        lease_owner = NULL, lease_expires = NULL, modified = now(), version = version + 1
    WHERE completion_status IS NULL AND state = 'cancel_requested'
      AND 'cancel_requested' IN ({from:cancelled})
      AND lease_expires < now() - %(grace)s * interval '1 second'
      AND pg_postmaster_start_time() < now() - %(grace)s * interval '1 second'
    RETURNING id, attempts, max_attempts
)
SELECT 'requeued', id, attempts, max_attempts FROM requeued
UNION ALL SELECT 'dead', id, attempts, max_attempts FROM dead
UNION ALL SELECT 'cancelled', id, attempts, max_attempts FROM cancelled

-- name: insert_messages
INSERT INTO task_messages (task_id, type, key, text, locale, parameters)
SELECT m.task_id, m.type, m.key, m.text, m.locale, m.parameters
FROM {messages}
ORDER BY m.ord

-- name: wake
SELECT pg_notify('taskstatus_work', '')

-- name: listen
LISTEN taskstatus_work

-- name: purge
WITH purged AS (
    DELETE FROM tasks
    WHERE created < %(before)s AND (state IN ({terminal}) OR deleted_at IS NOT NULL)
    RETURNING id
),
messages AS (
    DELETE FROM task_messages WHERE task_id IN (SELECT id FROM purged)
)
SELECT count(*) FROM purged

-- name: save_definitions
-- One row per name (postgres.py keeps the last), in name order so that nodes saving the same
-- definitions at once take the row locks in the same order.
INSERT INTO definitions (name, summary, schema, max_attempts, timeout, updated)
SELECT * FROM unnest(
    %(name)s::text[], %(summary)s::jsonb[], %(schema)s::jsonb[], %(max_attempts)s::integer[],
    %(timeout)s::float8[], %(updated)s::timestamptz[])
ORDER BY 1
ON CONFLICT (name) DO UPDATE SET
    summary = excluded.summary, schema = excluded.schema, max_attempts = excluded.max_attempts,
    timeout = excluded.timeout, updated = excluded.updated
WHERE definitions.summary IS DISTINCT FROM excluded.summary
   OR definitions.schema IS DISTINCT FROM excluded.schema
   OR definitions.max_attempts IS DISTINCT FROM excluded.max_attempts
   OR definitions.timeout IS DISTINCT FROM excluded.timeout

-- name: get_definition
SELECT summary, schema, max_attempts, timeout FROM definitions WHERE name = %(name)s

-- name: list_definitions
SELECT summary, schema, max_attempts, timeout FROM definitions ORDER BY name

-- name: save_client
INSERT INTO api_clients (id, name, secret_hash, scopes, owner, created, revoked)
VALUES (%(id)s, %(name)s, %(secret_hash)s, %(scopes)s, %(owner)s, %(created)s, %(revoked)s)
ON CONFLICT (id) DO UPDATE SET
    name = excluded.name, secret_hash = excluded.secret_hash, scopes = excluded.scopes,
    owner = excluded.owner, revoked = excluded.revoked

-- name: get_client
SELECT id, name, secret_hash, scopes, owner, created, revoked FROM api_clients
WHERE id = %(id)s

-- name: list_clients
SELECT id, name, secret_hash, scopes, owner, created, revoked FROM api_clients
ORDER BY created, id

-- name: revoke_client
UPDATE api_clients SET revoked = %(now)s WHERE id = %(id)s AND revoked IS NULL

-- name: insert_setting
INSERT INTO settings (key, value) VALUES (%(key)s, %(value)s) ON CONFLICT (key) DO NOTHING

-- name: get_setting
SELECT value FROM settings WHERE key = %(key)s

-- name: create_migrations_table
CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    name    text NOT NULL,
    applied timestamptz NOT NULL DEFAULT now()
)

-- name: applied_migrations
SELECT version FROM schema_migrations

-- name: record_migration
INSERT INTO schema_migrations (version, name) VALUES (%(version)s, %(name)s)

-- name: lock_migrations
SELECT pg_advisory_xact_lock(%(key)s)

-- name: task_events
-- Each task's events after its cursor, in order, at most %(limit)s per task (key lookups).
SELECT e.task_id, e.seq, e.kind, e.version, e.at, e.data, e.doc  -- data or doc (0019)
FROM unnest(%(ids)s::text[], %(afters)s::integer[]) WITH ORDINALITY AS c(id, after, ord)
CROSS JOIN LATERAL (
    SELECT * FROM task_events x WHERE x.task_id = c.id AND x.seq > c.after
    ORDER BY x.seq LIMIT %(limit)s
) e
ORDER BY c.ord, e.seq

-- name: listen_events
LISTEN taskstatus_events

-- Schedules (taskstatus.schedules) -----------------------------------------------------------

-- (schedule_rows.py reads a schedule's columns in this order)

-- name: insert_schedule
INSERT INTO schedules (name, handler, arguments, cron, every, timezone, missed, overlap, paused, next_fire,
    last_fire, last_task_id, created, modified, version)
VALUES (%(name)s, %(handler)s, %(arguments)s, %(cron)s, %(every)s, %(timezone)s, %(missed)s,
        %(overlap)s, %(paused)s, %(next_fire)s, %(last_fire)s, %(last_task_id)s, %(created)s,
        %(modified)s, 1)
ON CONFLICT (name) DO NOTHING
RETURNING name, handler, arguments, cron, every, timezone, missed, overlap, paused, next_fire,
    last_fire, last_task_id, created, modified, version

-- name: upsert_schedule
INSERT INTO schedules (name, handler, arguments, cron, every, timezone, missed, overlap, paused, next_fire,
    last_fire, last_task_id, created, modified, version)
VALUES (%(name)s, %(handler)s, %(arguments)s, %(cron)s, %(every)s, %(timezone)s, %(missed)s,
        %(overlap)s, %(paused)s, %(next_fire)s, %(last_fire)s, %(last_task_id)s, %(created)s,
        %(modified)s, 1)
ON CONFLICT (name) DO UPDATE SET
    handler = excluded.handler, arguments = excluded.arguments, cron = excluded.cron,
    every = excluded.every, timezone = excluded.timezone, missed = excluded.missed,
    overlap = excluded.overlap, paused = excluded.paused, next_fire = excluded.next_fire,
    modified = excluded.modified, version = schedules.version + 1
RETURNING name, handler, arguments, cron, every, timezone, missed, overlap, paused, next_fire,
    last_fire, last_task_id, created, modified, version

-- name: update_schedule
UPDATE schedules SET
    handler = %(handler)s, arguments = %(arguments)s, cron = %(cron)s, every = %(every)s,
    timezone = %(timezone)s, missed = %(missed)s, overlap = %(overlap)s, paused = %(paused)s,
    next_fire = %(next_fire)s, modified = %(modified)s, version = version + 1
WHERE name = %(name)s AND version = %(version)s
RETURNING name, handler, arguments, cron, every, timezone, missed, overlap, paused, next_fire,
    last_fire, last_task_id, created, modified, version

-- name: get_schedule
SELECT name, handler, arguments, cron, every, timezone, missed, overlap, paused, next_fire,
    last_fire, last_task_id, created, modified, version FROM schedules WHERE name = %(name)s

-- name: list_schedules
SELECT name, handler, arguments, cron, every, timezone, missed, overlap, paused, next_fire,
    last_fire, last_task_id, created, modified, version FROM schedules ORDER BY name

-- name: due_schedules
SELECT name, handler, arguments, cron, every, timezone, missed, overlap, paused, next_fire,
    last_fire, last_task_id, created, modified, version FROM schedules
WHERE next_fire IS NOT NULL AND next_fire <= %(now)s AND NOT paused
ORDER BY next_fire, name

-- name: next_schedule_fire
SELECT min(next_fire) FROM schedules WHERE next_fire IS NOT NULL AND NOT paused

-- name: delete_schedule
WITH gone AS (DELETE FROM schedules WHERE name = %(name)s RETURNING name),
     firings AS (DELETE FROM schedule_firings WHERE schedule IN (SELECT name FROM gone))
SELECT count(*) FROM gone

-- name: advance_schedule
-- The guard: only the node that still sees the firing it computed from moves the schedule on;
-- a rival that read the same row waits for this commit, then matches nothing.
UPDATE schedules SET next_fire = %(next)s, modified = %(now)s, version = version + 1
WHERE name = %(name)s AND next_fire = %(expected)s AND NOT paused
RETURNING name

-- name: insert_firings
-- The key that makes a firing happen once, whatever the guard above let through.
INSERT INTO schedule_firings (schedule, fire_time, task_id, fired)
SELECT %(name)s, f.fire_time, f.task_id, %(now)s
FROM unnest(%(times)s::timestamptz[], %(tasks)s::text[]) AS f(fire_time, task_id)
ORDER BY f.fire_time
ON CONFLICT (schedule, fire_time) DO NOTHING
RETURNING fire_time, task_id

-- name: schedule_fired
UPDATE schedules SET last_fire = %(last_fire)s, last_task_id = %(last_task_id)s
WHERE name = %(name)s

-- name: firings
SELECT fire_time, task_id FROM schedule_firings WHERE schedule = %(name)s ORDER BY fire_time

-- Limits (taskstatus.limits_policy) ----------------------------------------------------------

-- name: upsert_limits
INSERT INTO handler_limits (handler, concurrency, rate, burst, limit_key, declared, modified)
VALUES (%(handler)s, %(concurrency)s, %(rate)s, %(burst)s, %(limit_key)s, %(declared)s, now())
ON CONFLICT (handler) DO UPDATE SET
    concurrency = excluded.concurrency, rate = excluded.rate, burst = excluded.burst,
    limit_key = excluded.limit_key, declared = excluded.declared,
    modified = excluded.modified

-- name: delete_limits
WITH gone AS (DELETE FROM handler_limits WHERE handler = %(handler)s RETURNING handler),
     slots AS (DELETE FROM limit_slots WHERE handler = %(handler)s),
     buckets AS (DELETE FROM limit_buckets WHERE handler = %(handler)s)
SELECT pg_notify('taskstatus_work', '') FROM gone

-- name: list_limits
SELECT handler, concurrency, rate, burst, limit_key, declared FROM handler_limits
ORDER BY handler

-- name: lock_limits
-- The limited claim's first statement: claims of these handlers wait for each other here,
-- so each counts the running tasks the previous one left.
SELECT handler, concurrency, rate, burst, limit_key, declared FROM handler_limits
WHERE handler = ANY(%(handlers)s::text[])
ORDER BY handler
FOR UPDATE

-- name: limit_running
-- The slots by key; those of tasks that ended count until forget_slots removes them.
SELECT key, count(*) FROM limit_slots WHERE handler = %(handler)s GROUP BY key

-- name: forget_slots
-- Forget the slots of tasks that no longer run, then count the rest by key.
WITH stale AS (
    DELETE FROM limit_slots s
    WHERE s.handler = %(handler)s AND NOT EXISTS (
        SELECT FROM tasks t WHERE t.id = s.task_id AND t.state IN ({leased}))
    RETURNING s.task_id
)
SELECT key, count(*) FROM limit_slots
WHERE handler = %(handler)s AND task_id NOT IN (SELECT task_id FROM stale)
GROUP BY key

-- name: limit_buckets
-- The buckets with the seconds since each was filled, on the clock as it is now that this
-- claim holds the lock (now() is when its transaction began, maybe before a rival's fill),
-- and that time, which save_buckets stores: no interval is counted twice.
SELECT b.key, b.tokens, extract(epoch FROM c.t - b.at), c.t
FROM (SELECT clock_timestamp() AS t) c
LEFT JOIN limit_buckets b ON b.handler = %(handler)s

-- name: limit_candidates
-- Due tasks of the claimed handlers, limited or not, locked (taskstatus_pick: the claim's
-- pick without its filter), each with its place in queue order and, for handlers whose
-- limits are split by an argument, the arguments; key lookups of tasks, as the claim's.
WITH picked AS MATERIALIZED (
    SELECT ARRAY(SELECT taskstatus_pick(%(handlers)s::text[], %(scan)s)) AS ids
)
SELECT u.id, t.handler, CASE WHEN t.handler = ANY(%(keyed)s::text[]) THEN t.arguments END,
       t.progress, u.ord
FROM unnest((SELECT ids FROM picked)) WITH ORDINALITY AS u(id, ord)
CROSS JOIN LATERAL (
    SELECT x.handler, x.arguments, x.progress FROM tasks x WHERE x.id = u.id LIMIT 1
) t

-- name: claim_ids
-- The claim of the tasks the limited claim chose (the claim above, by id), with a slot for
-- each task of a handler with a concurrency limit; a waiting note goes.
WITH claimed AS (
    UPDATE tasks SET
        state = 'running', lease_owner = %(worker)s,
        lease_expires = now() + %(lease)s * interval '1 second',
        -- launched: when it got its slot or token, under the lock (not when the claim began)
        attempts = attempts + 1, launched = coalesce(launched, clock_timestamp()),
        modified = now(),
        progress = CASE WHEN progress LIKE 'waiting: limit of %%' THEN NULL ELSE progress END,
        version = version + 1
    WHERE tasks.id = ANY(%(ids)s::text[]) AND tasks.state IN ({from:running})
    RETURNING {run_columns}
),
dequeued AS (
    SELECT taskstatus_dequeue(ARRAY(SELECT id FROM claimed))  -- (0017: see the claim)
),
slots AS (
    INSERT INTO limit_slots (handler, task_id, key)
    SELECT s.handler, s.id, s.key
    FROM unnest(%(slot_ids)s::text[], %(slot_handlers)s::text[], %(slot_keys)s::text[])
        AS s(id, handler, key)
    WHERE s.id IN (SELECT id FROM claimed)
    ON CONFLICT (handler, task_id) DO UPDATE SET key = excluded.key
)
SELECT claimed.* FROM claimed LEFT JOIN dequeued ON true

-- name: save_buckets
INSERT INTO limit_buckets (handler, key, tokens, at)
SELECT %(handler)s, b.key, b.tokens, %(at)s
FROM unnest(%(keys)s::text[], %(tokens)s::float8[]) AS b(key, tokens)
ON CONFLICT (handler, key) DO UPDATE SET tokens = excluded.tokens, at = excluded.at

-- name: hold_notes
-- The reason a held task waits, in its progress (written when it changes).
UPDATE tasks SET progress = h.note, modified = now(), version = version + 1
FROM unnest(%(ids)s::text[], %(notes)s::text[]) AS h(id, note)
WHERE tasks.id = ANY(%(ids)s::text[]) AND tasks.id = h.id AND tasks.state = 'queued'
  AND tasks.progress IS DISTINCT FROM h.note

-- name: claim_keyless
-- The limited claim when no limit is split by an argument: the pick and the claim in one
-- statement. %(allow)s says, per limited handler, how many it may start (its free slots
-- and whole tokens, read under the lock) and whether its tasks take slots; the due tasks of
-- the claimed handlers are taken in queue order, a limited handler's beyond its allowance
-- passed over, up to %(limit)s. The buckets lose a token per task started.
WITH picked AS MATERIALIZED (
    SELECT ARRAY(SELECT taskstatus_pick(%(handlers)s::text[], %(scan)s)) AS ids
),
allow AS (
    SELECT * FROM jsonb_to_recordset(%(allow)s::jsonb)
        AS a(handler text, n integer, slot boolean, tokens float8)
),
ranked AS (
    -- a key lookup per picked task (LIMIT keeps the lateral a nested loop, whatever the
    -- statistics), numbered in queue order within its handler
    SELECT u.id, t.handler, u.ord,
           row_number() OVER (PARTITION BY t.handler ORDER BY u.ord) AS rn
    FROM unnest((SELECT ids FROM picked)) WITH ORDINALITY AS u(id, ord)
    CROSS JOIN LATERAL (SELECT x.handler FROM tasks x WHERE x.id = u.id LIMIT 1) t
),
chosen AS (
    SELECT r.id, r.handler, coalesce(a.slot, false) AS slot
    FROM ranked r LEFT JOIN allow a ON a.handler = r.handler
    WHERE a.n IS NULL OR r.rn <= a.n
    ORDER BY r.ord
    LIMIT %(limit)s
),
claimed AS (
    UPDATE tasks SET
        state = 'running', lease_owner = %(worker)s,
        lease_expires = now() + %(lease)s * interval '1 second',
        attempts = attempts + 1, launched = coalesce(launched, clock_timestamp()),
        modified = now(),
        progress = CASE WHEN progress LIKE 'waiting: limit of %%' THEN NULL ELSE progress END,
        version = version + 1
    WHERE tasks.id = ANY(ARRAY(SELECT id FROM chosen)) AND tasks.state IN ({from:running})
    RETURNING {run_columns}
),
dequeued AS (
    SELECT taskstatus_dequeue(ARRAY(SELECT id FROM claimed))  -- (0017: see the claim)
),
slots AS (
    INSERT INTO limit_slots (handler, task_id, key)
    SELECT c.handler, c.id, '' FROM chosen c
    WHERE c.slot AND c.id IN (SELECT id FROM claimed)
    ON CONFLICT (handler, task_id) DO NOTHING
),
spent AS (
    INSERT INTO limit_buckets (handler, key, tokens, at)
    SELECT a.handler, '', a.tokens - (SELECT count(*) FROM claimed c WHERE c.handler = a.handler),
           %(at)s
    FROM allow a WHERE a.tokens IS NOT NULL
    ON CONFLICT (handler, key) DO UPDATE SET tokens = excluded.tokens, at = excluded.at
)
SELECT claimed.* FROM claimed LEFT JOIN dequeued ON true

-- name: hold_next
-- After a claim that a limit cut short: the next due tasks of the handler get the reason.
UPDATE tasks SET progress = %(note)s, modified = now(), version = version + 1
WHERE tasks.id = ANY(ARRAY(SELECT taskstatus_pick(ARRAY[%(handler)s]::text[], %(n)s)))
  AND tasks.progress IS DISTINCT FROM %(note)s
