-- The event log's hot paths (issue 13): a claim and a worker's finish write their tasks' events
-- in the statement itself (postgres.sql: `claim`, `finish`), set-based, with one NOTIFY per
-- statement, instead of a plpgsql row trigger call per task (a call, three queries and a
-- NOTIFY each: most of what the log cost a task, which separate fast-path triggers did not
-- change).
--
-- events_version: the version whose events the statement that made it wrote itself; the row
-- trigger skips that change (its WHEN), so exactly one writer writes each change's events. No
-- other writer sets it, and every change moves the version, so any other change gets the
-- trigger. event_kinds: the kinds that change had, one bit each in the documented order (1
-- progress, 2 attributes, 4 launched, 8 cancel_requested, 16 retried, 32 lease_lost, 64 updated,
-- 128 completed), worked out in the UPDATE's SET, which reads the row as it was (the version
-- the statement locked, after any wait), by the same rules as taskstatus_task_changed.
-- Both are plain columns of no index: the claim's and the finish's updates stay heap-only.
ALTER TABLE tasks ADD COLUMN events_version integer, ADD COLUMN event_kinds integer;

-- The events themselves: one call per statement, after the statement locked and changed its
-- tasks (it passes them all). The queries of a plpgsql function keep their plans, so the
-- statements stay as cheap to plan as before (a finish planned its events' part at every call,
-- 0.2 ms). A VOLATILE function's queries take snapshots of their own: the last seq seen is that
-- of a change that committed while the statement waited for a task's lock, which the
-- statement's own snapshot misses. One NOTIFY for them all, as taskstatus_task_events sends.

-- A claim's: `launched`, for tasks that were queued (a claim changes nothing else).
CREATE FUNCTION taskstatus_launched_events(
    task_ids text[], task_versions integer[], changed timestamptz[], task_attempts integer[],
    launched_at timestamptz[]
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    firsts text[];
BEGIN
    WITH c AS (
        SELECT u.*, (SELECT coalesce(max(e.seq), 0) FROM task_events e
                     WHERE e.task_id = u.id COLLATE "C") + 1 AS seq
        FROM unnest(task_ids, task_versions, changed, task_attempts, launched_at)
            AS u(id, version, at, attempt, launched)
    ),
    written AS (
        INSERT INTO task_events (task_id, seq, kind, version, at, data)
        SELECT c.id, c.seq, 'launched', c.version, c.at,
               jsonb_build_object('attempt', c.attempt, 'launched', c.launched)
        FROM c
    )
    SELECT array_agg(c.id || ':' || c.seq) INTO firsts FROM c;
    IF firsts IS NOT NULL THEN
        PERFORM taskstatus_notify_events(firsts);
    END IF;
END
$$;

-- A finish's: `ended` are the tasks as the finish left them, each with its event_kinds.
CREATE FUNCTION taskstatus_ended_events(ended tasks[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    firsts text[];
BEGIN
    WITH n AS (
        SELECT t.*, (SELECT coalesce(max(e.seq), 0) FROM task_events e
                     WHERE e.task_id = t.id) AS last
        FROM unnest(ended) AS t
    ),
    written AS (
        INSERT INTO task_events (task_id, seq, kind, version, at, data)
        SELECT n.id, n.last + row_number() OVER (PARTITION BY n.id ORDER BY k.ord), k.kind,
               n.version, n.modified, k.data
        FROM n
        CROSS JOIN LATERAL (
            SELECT 1 AS ord, 'progress' AS kind,
                   jsonb_build_object('progress', n.progress,
                                      'percentComplete', n.percent_complete) AS data
            WHERE n.event_kinds & 1 <> 0
            UNION ALL
            SELECT 2, 'attributes',
                   jsonb_build_object('attributes', n.attributes, 'returns', n.returns)
            WHERE n.event_kinds & 2 <> 0
            UNION ALL
            SELECT 5, 'retried', jsonb_build_object('attempt', n.attempts, 'runAt', n.run_at)
            WHERE n.event_kinds & 16 <> 0
            UNION ALL
            SELECT 6, 'lease_lost', jsonb_build_object('attempt', n.attempts, 'state', n.state)
            WHERE n.event_kinds & 32 <> 0
            UNION ALL
            SELECT 8, 'completed',
                   jsonb_build_object('state', n.state, 'completionStatus', n.completion_status,
                                      'completed', n.completed)
            WHERE n.event_kinds & 128 <> 0
        ) k
    )
    SELECT array_agg(n.id || ':' || (n.last + 1)) INTO firsts FROM n;
    IF firsts IS NOT NULL THEN
        PERFORM taskstatus_notify_events(firsts);
    END IF;
END
$$;

DROP TRIGGER tasks_events_updated ON tasks;
CREATE TRIGGER tasks_events_updated AFTER UPDATE ON tasks
    FOR EACH ROW
    WHEN (OLD.version IS DISTINCT FROM NEW.version
          AND NEW.events_version IS DISTINCT FROM NEW.version)
    EXECUTE FUNCTION taskstatus_task_changed();
