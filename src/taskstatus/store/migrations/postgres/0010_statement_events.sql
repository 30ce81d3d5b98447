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

-- The tasks' last seqs, in a snapshot of its own (a VOLATILE function's query takes a fresh
-- one): called once the statement locked the tasks, it sees the events of a change that
-- committed while the statement waited for a lock, which the statement's own snapshot misses.
-- One call per statement, the lookups set-based (a call per task cost a task about 6 us).
CREATE FUNCTION taskstatus_last_seqs(ids text[])
RETURNS TABLE (task_id text, last integer) LANGUAGE sql VOLATILE AS $$
    SELECT u.id, (SELECT coalesce(max(e.seq), 0) FROM task_events e
                  WHERE e.task_id = u.id COLLATE "C")
    FROM unnest(ids) AS u(id)
$$;

DROP TRIGGER tasks_events_updated ON tasks;
CREATE TRIGGER tasks_events_updated AFTER UPDATE ON tasks
    FOR EACH ROW
    WHEN (OLD.version IS DISTINCT FROM NEW.version
          AND NEW.events_version IS DISTINCT FROM NEW.version)
    EXECUTE FUNCTION taskstatus_task_changed();
