-- Workers of different versions on one database (a rolling upgrade): which rows' last_seq
-- (0015) is kept. Workers from before 0015 still set events_version = version in their claim
-- and finish (0010) but never last_seq, so a row a newer worker had given a last_seq kept a
-- stale one under their changes, and the next newer claim or finish of that task counted
-- from it: a duplicate (task_id, seq), an error at every try of that statement. The
-- statements that keep last_seq now mark their rows by the sign: events_version = -version.
-- A row with a positive events_version (an older worker's change, or 0015's) is looked up
-- once; the older workers number their own events by lookup (taskstatus_last_seqs, kept
-- for them), so every mix of versions numbers 1..n.
CREATE OR REPLACE FUNCTION taskstatus_row_last_seq(task text, version integer,
                                                   events_version integer, last_seq integer,
                                                   event_kinds integer)
RETURNS integer LANGUAGE sql VOLATILE AS $$
    SELECT CASE WHEN events_version = -version AND last_seq IS NOT NULL
                THEN last_seq + coalesce((event_kinds & 129 = 1)::int  -- an end's progress
                                         + (event_kinds & 2 <> 0)::int  -- rides on `completed`
                                         + (event_kinds & 16 <> 0)::int
                                         + (event_kinds & 32 <> 0)::int
                                         + (event_kinds & 128 <> 0)::int, 0)
                WHEN last_seq IS NULL AND version = 1 THEN 1
                ELSE taskstatus_last_seq(task) END
$$;

-- A statement that wrote a change's events itself, of either sign: not the trigger's again.
DROP TRIGGER tasks_events_updated ON tasks;
CREATE TRIGGER tasks_events_updated AFTER UPDATE ON tasks
    FOR EACH ROW
    WHEN (OLD.version IS DISTINCT FROM NEW.version
          AND NEW.events_version IS DISTINCT FROM NEW.version
          AND NEW.events_version IS DISTINCT FROM -NEW.version)
    EXECUTE FUNCTION taskstatus_task_changed();

-- A task inserted with messages has more events than `created` at version 1, which the rule
-- above takes for its last seq 1 while last_seq is NULL: the messages' trigger marks such a
-- task (-1: look it up) in the insert's statement, whichever node's code inserted it (0015
-- left this to the newer nodes' store, so an older node's insert with messages was
-- miscounted). Once per task, only for tasks created with messages.
CREATE OR REPLACE FUNCTION taskstatus_message_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    task_version integer;
    task_modified timestamptz;
    task_last_seq integer;
    last_seq integer;
    last_kind text;
    last_version integer;
    at_seq integer;
BEGIN
    SELECT t.version, t.modified, t.last_seq INTO task_version, task_modified, task_last_seq
    FROM tasks t WHERE t.id = NEW.task_id;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF task_version = 1 AND task_last_seq IS NULL THEN
        UPDATE tasks SET last_seq = -1 WHERE id = NEW.task_id;
    END IF;
    SELECT e.seq, e.kind, e.version INTO last_seq, last_kind, last_version
    FROM task_events e WHERE e.task_id = NEW.task_id ORDER BY e.seq DESC LIMIT 1;
    IF last_kind = 'completed' AND last_version = task_version THEN
        UPDATE task_events SET seq = last_seq + 1
        WHERE task_id = NEW.task_id AND seq = last_seq;
        at_seq := last_seq;
    ELSE
        at_seq := coalesce(last_seq, 0) + 1;
    END IF;
    INSERT INTO task_events (task_id, seq, kind, version, at, data)
    VALUES (NEW.task_id, at_seq, 'message', task_version, task_modified,
            jsonb_build_object('type', NEW.type, 'key', NEW.key, 'text', NEW.text,
                               'locale', NEW.locale, 'parameters', NEW.parameters));
    PERFORM pg_notify('taskstatus_events', NEW.task_id || ':' || at_seq);
    RETURN NULL;
END
$$;
