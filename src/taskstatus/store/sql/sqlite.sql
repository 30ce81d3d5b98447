-- SQLite queries, by name. {columns} is the task column list below; {from:STATE} is the list of
-- states the lifecycle (taskstatus.model.sources) allows STATE to be entered from, {leased} the
-- states a worker holds a lease in, {pending} and {terminal} what they say. Lists of values are
-- passed as one JSON array parameter and read with json_each, so each statement text is fixed.

-- name: columns
-- {run_columns} is this list with NULL in place of {column_definition} and {column_messages}
-- (sqlfiles.py): what a claim returns.
tasks.id, tasks.handler, {column_definition} AS definition,
tasks.type, tasks.unique_name, tasks.description, tasks.parent_name, tasks.launcher,
tasks.target_id, tasks.target_type, tasks.target_name, tasks.created, tasks.modified,
tasks.launched, tasks.completed, tasks.completion_status, tasks.returns, tasks.attributes,
tasks.progress, tasks.percent_complete, tasks.state, tasks.arguments, tasks.parent_id,
tasks.priority, tasks.run_at, tasks.attempts, tasks.max_attempts, tasks.timeout,
tasks.lease_owner, tasks.lease_expires, tasks.idempotency_key, tasks.deleted_at, tasks.version,
{column_messages} AS messages

-- name: column_definition
(SELECT d.summary FROM definitions d WHERE d.name = tasks.handler)

-- name: column_messages
(SELECT json_group_array(json_array(m.type, m.key, m.text, m.locale, json(m.parameters)))
   FROM (SELECT * FROM task_messages m WHERE m.task_id = tasks.id ORDER BY m.seq) m)

-- name: insert_task
-- OR ROLLBACK: no statement journal per task (migrations/sqlite/0005_event_fast_paths.sql).
INSERT OR ROLLBACK INTO tasks (
    created_event, id, handler, type, unique_name, description, parent_name, launcher, target_id, target_type,
    target_name, created, modified, launched, completed, completion_status, returns, attributes,
    progress, percent_complete, state, arguments, parent_id, priority, run_at, attempts,
    max_attempts, timeout, lease_owner, lease_expires, idempotency_key, deleted_at, version)
VALUES (
    :created_event, :id, :handler, :type, :unique_name, :description, :parent_name, :launcher, :target_id,
    :target_type, :target_name, :created, :modified, :launched, :completed, :completion_status,
    :returns, :attributes, :progress, :percent_complete, :state, :arguments, :parent_id,
    :priority, :run_at, :attempts, :max_attempts, :timeout, :lease_owner, :lease_expires,
    :idempotency_key, :deleted_at, :version)
ON CONFLICT (launcher, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING

-- name: get_task
SELECT {columns} FROM tasks WHERE tasks.id = :id AND (tasks.deleted_at IS NULL OR :include_deleted)

-- name: probe_task
-- What tells whether a task read before is still the same: every write that changes what a
-- reader sees bumps the version, and the definition summary comes from `definitions`.
SELECT tasks.version, tasks.deleted_at, (SELECT max(d.updated) FROM definitions d) AS defined
FROM tasks WHERE tasks.id = :id

-- name: get_by_idempotency_key
SELECT {columns} FROM tasks WHERE tasks.launcher = :launcher AND tasks.idempotency_key = :key

-- name: children
SELECT {columns} FROM tasks
WHERE tasks.parent_id = :id AND tasks.deleted_at IS NULL
ORDER BY tasks.created, tasks.id

-- name: tree
WITH RECURSIVE tree(id) AS (
    SELECT :id
    UNION
    SELECT c.id FROM tasks c JOIN tree ON c.parent_id = tree.id WHERE c.deleted_at IS NULL
)
SELECT {columns} FROM tasks WHERE tasks.id IN (SELECT id FROM tree)

-- name: claim
-- INDEXED BY: walk the due index in order and stop at LIMIT (the planner would otherwise pick
-- the handler index and sort every task of the handler); SQLite errors if it cannot use it.
-- `state = {from:running}` (not IN) is what the partial index matches; should the lifecycle
-- ever allow several sources, the list makes this a syntax error rather than a silent drift.
UPDATE tasks SET
    state = 'running', lease_owner = :worker, lease_expires = :expires,
    attempts = attempts + 1, launched = coalesce(launched, :now), modified = :now,
    version = version + 1
WHERE id IN (
    SELECT id FROM tasks INDEXED BY tasks_due
    WHERE state = {from:running} AND run_at <= :now AND deleted_at IS NULL
      AND handler IN (SELECT value FROM json_each(:handlers))
    ORDER BY priority DESC, run_at
    LIMIT :limit)
RETURNING {run_columns}

-- name: extend_leases
UPDATE tasks SET lease_expires = :expires
WHERE lease_owner = :worker AND state IN ({leased}) AND id IN (SELECT value FROM json_each(:ids))

-- name: lease_states
SELECT id, state, lease_owner FROM tasks WHERE id IN (SELECT value FROM json_each(:ids))

-- name: report
UPDATE tasks SET
    progress = :progress, percent_complete = :percent_complete,
    attributes = coalesce(:attributes, attributes), returns = coalesce(:returns, returns),
    modified = :now, version = version + 1
WHERE id = :id AND lease_owner = :worker AND state IN ({leased})
  AND (:attempt IS NULL OR attempts = :attempt)  -- fenced: only the attempt that claimed it

-- name: insert_message
INSERT INTO task_messages (task_id, type, key, text, locale, parameters)
VALUES (:id, :type, :key, :text, :locale, :parameters)

-- name: insert_message_if_leased
INSERT INTO task_messages (task_id, type, key, text, locale, parameters)
SELECT :id, :type, :key, :text, :locale, :parameters
WHERE EXISTS (
    SELECT 1 FROM tasks WHERE id = :id AND lease_owner = :worker AND state IN ({leased})
      AND (:attempt IS NULL OR attempts = :attempt))

-- name: held_states
SELECT id, state, attempts FROM tasks
WHERE id IN (SELECT value FROM json_each(:ids)) AND lease_owner = :worker

-- name: finish
-- The caller checked, in this same BEGIN IMMEDIATE transaction, that the worker holds each
-- task and that the lifecycle allows the outcome (held_states + model.sources).
-- One statement for the batch (:outcomes, a JSON array of [id, state, completion_status,
-- progress, percent_complete, attributes, returns, run_at], one per task): a statement that
-- fires the event log's triggers keeps a statement journal, which cost a single-row statement
-- about as much as the update itself.
UPDATE tasks SET
    state = o.state, completion_status = o.completion_status,
    completed = CASE WHEN o.completion_status IS NULL THEN tasks.completed ELSE :now END,
    progress = coalesce(o.progress, tasks.progress),
    percent_complete = coalesce(o.percent_complete, tasks.percent_complete),
    attributes = coalesce(o.attributes, tasks.attributes),
    returns = coalesce(o.returns, tasks.returns),
    run_at = coalesce(o.run_at, tasks.run_at), lease_owner = NULL, lease_expires = NULL,
    modified = :now, version = tasks.version + 1
FROM (SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS state,
             json_extract(value, '$[2]') AS completion_status,
             json_extract(value, '$[3]') AS progress,
             json_extract(value, '$[4]') AS percent_complete,
             json_extract(value, '$[5]') AS attributes, json_extract(value, '$[6]') AS returns,
             json_extract(value, '$[7]') AS run_at
      FROM json_each(:outcomes)) AS o
WHERE tasks.id = o.id AND tasks.lease_owner = :worker

-- name: release
UPDATE tasks SET
    state = 'queued', lease_owner = NULL, lease_expires = NULL,
    attempts = max(attempts - 1, 0), modified = :now, version = version + 1
WHERE lease_owner = :worker AND state = 'running' AND 'running' IN ({from:queued})
  AND id IN (SELECT value FROM json_each(:ids))

-- name: release_cancelled
UPDATE tasks SET
    state = 'cancelled', completion_status = 'TERMINATED', completed = :now,
    lease_owner = NULL, lease_expires = NULL, modified = :now, version = version + 1
WHERE lease_owner = :worker AND state = 'cancel_requested'
  AND 'cancel_requested' IN ({from:cancelled}) AND id IN (SELECT value FROM json_each(:ids))

-- name: recover_requeue
UPDATE tasks SET
    state = 'queued', lease_owner = NULL, lease_expires = NULL, modified = :now,
    version = version + 1
WHERE state = 'running' AND 'running' IN ({from:queued}) AND lease_expires < :expired_before
  AND attempts < max_attempts
RETURNING id, attempts, max_attempts

-- name: recover_dead
UPDATE tasks SET
    state = 'dead', completion_status = 'TEMPERROR', completed = :now, lease_owner = NULL,
    lease_expires = NULL, modified = :now, version = version + 1
WHERE state = 'running' AND 'running' IN ({from:dead}) AND lease_expires < :expired_before
  AND attempts >= max_attempts
RETURNING id, attempts, max_attempts

-- name: recover_cancelled
UPDATE tasks SET
    state = 'cancelled', completion_status = 'TERMINATED', completed = :now,
    lease_owner = NULL, lease_expires = NULL, modified = :now, version = version + 1
WHERE state = 'cancel_requested' AND 'cancel_requested' IN ({from:cancelled})
  AND lease_expires < :expired_before
RETURNING id, attempts, max_attempts

-- name: purge_messages
DELETE FROM task_messages WHERE task_id IN (
    SELECT id FROM tasks
    WHERE created < :before AND (state IN ({terminal}) OR deleted_at IS NOT NULL))

-- name: purge_tasks
DELETE FROM tasks
WHERE created < :before AND (state IN ({terminal}) OR deleted_at IS NOT NULL)

-- name: save_definition
INSERT INTO definitions (name, summary, schema, max_attempts, timeout, updated)
VALUES (:name, :summary, :schema, :max_attempts, :timeout, :updated)
ON CONFLICT (name) DO UPDATE SET
    summary = excluded.summary, schema = excluded.schema, max_attempts = excluded.max_attempts,
    timeout = excluded.timeout, updated = excluded.updated
WHERE definitions.summary IS NOT excluded.summary OR definitions.schema IS NOT excluded.schema
   OR definitions.max_attempts IS NOT excluded.max_attempts
   OR definitions.timeout IS NOT excluded.timeout

-- name: get_definition
SELECT summary, schema, max_attempts, timeout FROM definitions WHERE name = :name

-- name: list_definitions
SELECT summary, schema, max_attempts, timeout FROM definitions ORDER BY name

-- name: save_client
INSERT INTO api_clients (id, name, secret_hash, scopes, owner, created, revoked)
VALUES (:id, :name, :secret_hash, :scopes, :owner, :created, :revoked)
ON CONFLICT (id) DO UPDATE SET
    name = excluded.name, secret_hash = excluded.secret_hash, scopes = excluded.scopes,
    owner = excluded.owner, revoked = excluded.revoked

-- name: get_client
SELECT id, name, secret_hash, scopes, owner, created, revoked FROM api_clients WHERE id = :id

-- name: list_clients
SELECT id, name, secret_hash, scopes, owner, created, revoked FROM api_clients ORDER BY created, id

-- name: revoke_client
UPDATE api_clients SET revoked = :now WHERE id = :id AND revoked IS NULL

-- name: insert_setting
INSERT INTO settings (key, value) VALUES (:key, :value) ON CONFLICT (key) DO NOTHING

-- name: get_setting
SELECT value FROM settings WHERE key = :key

-- name: task_events
SELECT task_id, seq, kind, version, at, data FROM task_events
WHERE task_id = :id AND seq > :after ORDER BY seq LIMIT :limit

-- name: created_events
-- Seq 1 of each task (0007: in the task's row; NULL for tasks from before it, stored then).
SELECT id, created_event, created FROM tasks
WHERE id IN (SELECT value FROM json_each(:ids)) AND created_event IS NOT NULL

-- name: purged
-- After a purge that removed tasks: the highest task rowid and event id left, past which
-- SQLite numbers the next ones, perhaps with one a follower saw on a purged task
-- (Store.on_events reads again from here). The last 100 purges are kept.
INSERT INTO task_purges (floor, event_floor)
SELECT coalesce(max(rowid), 0), (SELECT coalesce(max(id), 0) FROM task_events) FROM tasks

-- name: forget_purges
DELETE FROM task_purges WHERE n <= (SELECT max(n) FROM task_purges) - 100

-- name: last_event_id
-- A follower's cursor: the last event id, task rowid and purge.
SELECT coalesce(max(id), 0), (SELECT coalesce(max(rowid), 0) FROM tasks),
       (SELECT coalesce(max(n), 0) FROM task_purges)
FROM task_events

-- name: purges_since
SELECT max(n), min(floor), min(event_floor) FROM task_purges WHERE n > :after

-- name: tasks_since
-- The tasks inserted after the rowid :after (their `created`, seq 1, is in their row).
SELECT id, rowid FROM tasks WHERE rowid > :after

-- name: events_since
-- What a process following the file learns after a commit: which tasks have new events.
SELECT task_id, min(seq), max(id) FROM task_events WHERE id > :after GROUP BY task_id

-- Schedules (taskstatus.schedules) -----------------------------------------------------------

-- (schedule_rows.py reads a schedule's columns in this order)

-- name: insert_schedule
INSERT INTO schedules (name, handler, arguments, cron, every, timezone, missed, overlap, paused, next_fire,
    last_fire, last_task_id, created, modified, version)
VALUES (:name, :handler, :arguments, :cron, :every, :timezone, :missed, :overlap, :paused,
        :next_fire, :last_fire, :last_task_id, :created, :modified, 1)
ON CONFLICT (name) DO NOTHING
RETURNING name, handler, arguments, cron, every, timezone, missed, overlap, paused, next_fire,
    last_fire, last_task_id, created, modified, version

-- name: upsert_schedule
INSERT INTO schedules (name, handler, arguments, cron, every, timezone, missed, overlap, paused, next_fire,
    last_fire, last_task_id, created, modified, version)
VALUES (:name, :handler, :arguments, :cron, :every, :timezone, :missed, :overlap, :paused,
        :next_fire, :last_fire, :last_task_id, :created, :modified, 1)
ON CONFLICT (name) DO UPDATE SET
    handler = excluded.handler, arguments = excluded.arguments, cron = excluded.cron,
    every = excluded.every, timezone = excluded.timezone, missed = excluded.missed,
    overlap = excluded.overlap, paused = excluded.paused, next_fire = excluded.next_fire,
    modified = excluded.modified, version = schedules.version + 1
RETURNING name, handler, arguments, cron, every, timezone, missed, overlap, paused, next_fire,
    last_fire, last_task_id, created, modified, version

-- name: update_schedule
UPDATE schedules SET
    handler = :handler, arguments = :arguments, cron = :cron, every = :every,
    timezone = :timezone, missed = :missed, overlap = :overlap, paused = :paused,
    next_fire = :next_fire, modified = :modified, version = version + 1
WHERE name = :name AND version = :version
RETURNING name, handler, arguments, cron, every, timezone, missed, overlap, paused, next_fire,
    last_fire, last_task_id, created, modified, version

-- name: get_schedule
SELECT name, handler, arguments, cron, every, timezone, missed, overlap, paused, next_fire,
    last_fire, last_task_id, created, modified, version FROM schedules WHERE name = :name

-- name: list_schedules
SELECT name, handler, arguments, cron, every, timezone, missed, overlap, paused, next_fire,
    last_fire, last_task_id, created, modified, version FROM schedules ORDER BY name

-- name: due_schedules
SELECT name, handler, arguments, cron, every, timezone, missed, overlap, paused, next_fire,
    last_fire, last_task_id, created, modified, version FROM schedules
WHERE next_fire IS NOT NULL AND next_fire <= :now AND NOT paused
ORDER BY next_fire, name

-- name: delete_schedule
DELETE FROM schedules WHERE name = :name

-- name: delete_firings
DELETE FROM schedule_firings WHERE schedule = :name

-- name: advance_schedule
UPDATE schedules SET next_fire = :next, modified = :now, version = version + 1
WHERE name = :name AND next_fire = :expected AND NOT paused

-- name: insert_firing
INSERT INTO schedule_firings (schedule, fire_time, task_id, fired)
VALUES (:name, :fire_time, :task_id, :now)
ON CONFLICT (schedule, fire_time) DO NOTHING

-- name: schedule_fired
UPDATE schedules SET last_fire = :last_fire, last_task_id = :last_task_id WHERE name = :name

-- name: firings
SELECT fire_time, task_id FROM schedule_firings WHERE schedule = :name ORDER BY fire_time

-- Limits (taskstatus.limits_policy) ----------------------------------------------------------

-- name: upsert_limits
INSERT INTO handler_limits (handler, concurrency, rate, burst, limit_key, declared, modified)
VALUES (:handler, :concurrency, :rate, :burst, :limit_key, :declared, :now)
ON CONFLICT (handler) DO UPDATE SET
    concurrency = excluded.concurrency, rate = excluded.rate, burst = excluded.burst,
    limit_key = excluded.limit_key, declared = excluded.declared,
    modified = excluded.modified

-- name: delete_limits
DELETE FROM handler_limits WHERE handler = :handler

-- name: delete_limit_state
DELETE FROM limit_slots WHERE handler = :handler

-- name: delete_limit_buckets
DELETE FROM limit_buckets WHERE handler = :handler

-- name: list_limits
SELECT handler, concurrency, rate, burst, limit_key, declared FROM handler_limits
ORDER BY handler

-- name: forget_slots
DELETE FROM limit_slots
WHERE handler = :handler AND NOT EXISTS (
    SELECT 1 FROM tasks t WHERE t.id = limit_slots.task_id AND t.state IN ({leased}))

-- name: limit_running
SELECT key, count(*) FROM limit_slots WHERE handler = :handler GROUP BY key

-- name: limit_buckets
SELECT key, tokens, at FROM limit_buckets WHERE handler = :handler

-- name: limit_candidates
SELECT id, arguments, progress FROM tasks INDEXED BY tasks_due
WHERE state = {from:running} AND run_at <= :now AND deleted_at IS NULL AND handler = :handler
ORDER BY priority DESC, run_at
LIMIT :scan

-- name: claim_id
UPDATE tasks SET
    state = 'running', lease_owner = :worker, lease_expires = :expires,
    attempts = attempts + 1, launched = coalesce(launched, :now), modified = :now,
    progress = CASE WHEN progress LIKE 'waiting: limit of %' THEN NULL ELSE progress END,
    version = version + 1
WHERE id = :id AND state = {from:running}
RETURNING {run_columns}

-- name: insert_slot
INSERT INTO limit_slots (handler, task_id, key) VALUES (:handler, :id, :key)
ON CONFLICT (handler, task_id) DO UPDATE SET key = excluded.key

-- name: save_bucket
INSERT INTO limit_buckets (handler, key, tokens, at) VALUES (:handler, :key, :tokens, :now)
ON CONFLICT (handler, key) DO UPDATE SET tokens = excluded.tokens, at = excluded.at

-- name: hold_note
UPDATE tasks SET progress = :note, modified = :now, version = version + 1
WHERE id = :id AND state = 'queued' AND progress IS NOT :note
