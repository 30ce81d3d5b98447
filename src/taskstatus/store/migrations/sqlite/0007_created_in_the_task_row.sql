-- `created` is no longer a row (issue 13): a task keeps its creation event in its own row
-- (tasks.created_event: '' for the usual one, a task queued at version 1, due and modified
-- when created, which the reader makes from `created`; else [version, at, data], written by
-- the insert), and the store puts it first, as seq 1, when a reader asks for the task's events
-- from the start; the stored events of a task start at seq 2. Tasks from before this migration
-- keep their stored `created`.
-- Measured with callgrind (bench.event_log_cost's run, 1000 and 3000 no-op tasks): the
-- `created` row cost a task 27.3 k instructions of the log's 72.6 k (848.5 k a task with the
-- log, 775.9 k without it), all of it inside SQLite's single write lock, which the end-to-end
-- run holds 75-92 % of the time: an insert's trigger program, its row, its (task_id, seq) index
-- entry and the sqlite_sequence update of AUTOINCREMENT. With this migration: 831.8 k with the
-- log, 781.4 k without (the column costs 5.5 k a task whether the log is on or not), so the
-- log, column included, costs 55.9 k. JSON for every task instead of '' cost 2.6 k more, and
-- formatting its times again in Python 35 k.
-- The stream of every task (Store.on_events) learns of a new task from its rowid. SQLite
-- numbers a new row past the highest rowid in the table, so after a purge that removed the
-- newest tasks the next task may get a rowid a follower saw on a purged one: each such purge
-- records the highest rowid left (task_purges), and a follower reads again past it (sqlite.sql:
-- purged, purges_since). Numbering the insert past a recorded floor instead cost 4 k a task.
-- A task inserted already ended still stores its `completed`, now as seq 2 without a row 1.

-- task_events.id without AUTOINCREMENT, which read and updated sqlite_sequence at every event
-- (4.7 k instructions a task of the log's, measured as above on this migration's log). SQLite
-- numbers a row past the highest id left, so an id a purge removed may be given again: the
-- purge records the highest id left too (task_purges.event_floor), and a follower reads again
-- past it. The table is made anew with its rows as they were.
CREATE TABLE task_events_kept AS SELECT * FROM task_events;
DROP TABLE task_events;
CREATE TABLE task_events (
    id      INTEGER PRIMARY KEY,
    task_id TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    kind    TEXT NOT NULL,
    version INTEGER NOT NULL,
    at      TEXT NOT NULL,
    data    TEXT NOT NULL,
    UNIQUE (task_id, seq)
);
INSERT INTO task_events (id, task_id, seq, kind, version, at, data)
SELECT id, task_id, seq, kind, version, at, data FROM task_events_kept;
DROP TABLE task_events_kept;
DELETE FROM sqlite_sequence WHERE name = 'task_events';

ALTER TABLE tasks ADD COLUMN created_event TEXT;

CREATE TABLE task_purges (
    n INTEGER PRIMARY KEY, floor INTEGER NOT NULL, event_floor INTEGER NOT NULL
);

DROP TRIGGER task_events_created;

-- A task inserted without created_event (by a process from before 0007 on a migrated file)
-- still gets its stored `created`, as before.
CREATE TRIGGER task_events_created AFTER INSERT ON tasks
WHEN NEW.completion_status IS NOT NULL OR NEW.created_event IS NULL
BEGIN
    INSERT INTO task_events (task_id, seq, kind, version, at, data)
    SELECT NEW.id, 1, 'created', NEW.version, NEW.modified,
           '{"state":"' || NEW.state || '","runAt":"' || NEW.run_at || '"}'
    WHERE NEW.created_event IS NULL;
    INSERT INTO task_events (task_id, seq, kind, version, at, data)
    SELECT NEW.id, 2, 'completed', NEW.version, NEW.modified,
            '{"state":"' || NEW.state || '","completionStatus":"' || NEW.completion_status
                || '","completed":' || coalesce('"' || NEW.completed || '"', 'null') || '}'
    WHERE NEW.completion_status IS NOT NULL;
END;

-- The other triggers as 0002, 0005 and 0006 made them, numbering on from 1 when a task has
-- no stored event yet (its seq 1 is its row's `created`).

DROP TRIGGER task_events_changed;

CREATE TRIGGER task_events_changed AFTER UPDATE ON tasks
WHEN NEW.version <> OLD.version
 AND NOT (((NEW.state = 'running' AND OLD.state = 'queued'
            AND NEW.progress IS OLD.progress AND NEW.percent_complete = OLD.percent_complete)
           OR (NEW.completion_status IS NOT NULL AND OLD.completion_status IS NULL
               AND NEW.state <> 'dead'))
      AND (NEW.attributes, NEW.returns, NEW.deleted_at, NEW.unique_name, NEW.description,
           NEW.parent_name, NEW.priority, NEW.target_id, NEW.target_type, NEW.target_name)
       IS (OLD.attributes, OLD.returns, OLD.deleted_at, OLD.unique_name, OLD.description,
           OLD.parent_name, OLD.priority, OLD.target_id, OLD.target_type, OLD.target_name))
BEGIN
    INSERT INTO task_events (task_id, seq, kind, version, at, data)
    SELECT NEW.id,
           (SELECT coalesce(max(e.seq), 1) FROM task_events e WHERE e.task_id = NEW.id)
               + row_number() OVER (ORDER BY k.ord),
           k.kind, NEW.version, NEW.modified, k.data
    FROM (
        SELECT 1 AS ord, 'progress' AS kind,
               json_object('progress', NEW.progress,
                           'percentComplete', NEW.percent_complete) AS data
        WHERE (NEW.progress IS NOT OLD.progress OR NEW.percent_complete <> OLD.percent_complete)
          AND NOT (NEW.completion_status IS NOT NULL AND OLD.completion_status IS NULL)
        UNION ALL
        SELECT 2, 'attributes',
               json_object('attributes', json(NEW.attributes), 'returns', json(NEW.returns))
        WHERE NEW.attributes IS NOT OLD.attributes OR NEW.returns IS NOT OLD.returns
        UNION ALL
        SELECT 3, 'launched', json_object('attempt', NEW.attempts, 'launched', NEW.launched)
        WHERE NEW.state = 'running' AND OLD.state <> 'running'
        UNION ALL
        SELECT 4, 'cancel_requested', json_object('state', NEW.state)
        WHERE NEW.state = 'cancel_requested' AND OLD.state <> 'cancel_requested'
        UNION ALL
        SELECT 5, 'retried', json_object('attempt', OLD.attempts, 'runAt', NEW.run_at)
        WHERE NEW.state = 'queued' AND OLD.state IN ('running', 'cancel_requested')
          AND NEW.attempts >= OLD.attempts AND NEW.run_at IS NOT OLD.run_at
        UNION ALL
        SELECT 5, 'released', json_object('attempt', OLD.attempts)
        WHERE NEW.state = 'queued' AND OLD.state IN ('running', 'cancel_requested')
          AND NEW.attempts < OLD.attempts
        UNION ALL
        SELECT 5, 'lease_lost', json_object('attempt', OLD.attempts, 'state', NEW.state)
        WHERE NEW.state IN ('queued', 'dead') AND OLD.state IN ('running', 'cancel_requested')
          AND NEW.attempts = OLD.attempts AND NEW.run_at IS OLD.run_at
          AND OLD.lease_expires < NEW.modified
        UNION ALL
        SELECT 6, 'deleted', json_object('deleted', NEW.deleted_at)
        WHERE NEW.deleted_at IS NOT NULL AND OLD.deleted_at IS NULL
        UNION ALL
        SELECT 7, 'updated', json_object('modified', NEW.modified)
        WHERE NEW.unique_name IS NOT OLD.unique_name OR NEW.description IS NOT OLD.description
           OR NEW.parent_name IS NOT OLD.parent_name OR NEW.priority <> OLD.priority
           OR NEW.target_id IS NOT OLD.target_id OR NEW.target_name IS NOT OLD.target_name
           OR NEW.target_type IS NOT OLD.target_type
           OR (NEW.state = OLD.state AND (NEW.run_at IS NOT OLD.run_at
               OR NEW.launched IS NOT OLD.launched OR NEW.completed IS NOT OLD.completed))
        UNION ALL
        SELECT 8, 'completed',
               json_object('state', NEW.state, 'completionStatus', NEW.completion_status,
                           'completed', NEW.completed, 'progress', NEW.progress,
                           'percentComplete', NEW.percent_complete)
        WHERE NEW.completion_status IS NOT NULL AND OLD.completion_status IS NULL
    ) k;
END;

DROP TRIGGER task_events_launched;

CREATE TRIGGER task_events_launched AFTER UPDATE ON tasks
WHEN NEW.state = 'running' AND OLD.state = 'queued' AND NEW.version <> OLD.version
 AND NEW.progress IS OLD.progress AND NEW.percent_complete = OLD.percent_complete
 AND (NEW.attributes, NEW.returns, NEW.deleted_at, NEW.unique_name, NEW.description,
      NEW.parent_name, NEW.priority, NEW.target_id, NEW.target_type, NEW.target_name)
  IS (OLD.attributes, OLD.returns, OLD.deleted_at, OLD.unique_name, OLD.description,
      OLD.parent_name, OLD.priority, OLD.target_id, OLD.target_type, OLD.target_name)
BEGIN
    INSERT INTO task_events (task_id, seq, kind, version, at, data)
    VALUES (NEW.id,
            (SELECT coalesce(max(e.seq), 1) FROM task_events e WHERE e.task_id = NEW.id) + 1,
            'launched', NEW.version, NEW.modified,
            json_object('attempt', NEW.attempts, 'launched', NEW.launched));
END;

DROP TRIGGER task_events_ended;

CREATE TRIGGER task_events_ended AFTER UPDATE ON tasks
WHEN NEW.completion_status IS NOT NULL AND OLD.completion_status IS NULL AND NEW.state <> 'dead'
 AND NEW.version <> OLD.version
 AND (NEW.attributes, NEW.returns, NEW.deleted_at, NEW.unique_name, NEW.description,
      NEW.parent_name, NEW.priority, NEW.target_id, NEW.target_type, NEW.target_name)
  IS (OLD.attributes, OLD.returns, OLD.deleted_at, OLD.unique_name, OLD.description,
      OLD.parent_name, OLD.priority, OLD.target_id, OLD.target_type, OLD.target_name)
BEGIN
    INSERT INTO task_events (task_id, seq, kind, version, at, data)
    VALUES (NEW.id,
            (SELECT coalesce(max(e.seq), 1) FROM task_events e WHERE e.task_id = NEW.id) + 1,
            'completed', NEW.version, NEW.modified,
            json_object('state', NEW.state, 'completionStatus', NEW.completion_status,
                        'completed', NEW.completed, 'progress', NEW.progress,
                        'percentComplete', NEW.percent_complete));
END;

DROP TRIGGER task_events_message;

CREATE TRIGGER task_events_message AFTER INSERT ON task_messages
BEGIN
    UPDATE task_events SET seq = seq + 1
    WHERE task_id = NEW.task_id AND kind = 'completed'
      AND seq = (SELECT max(e.seq) FROM task_events e WHERE e.task_id = NEW.task_id)
      AND version = (SELECT t.version FROM tasks t WHERE t.id = NEW.task_id);
    INSERT INTO task_events (task_id, seq, kind, version, at, data)
    SELECT NEW.task_id,
           CASE WHEN last.kind = 'completed' AND last.version = t.version
                THEN last.seq - 1 ELSE coalesce(last.seq, 1) + 1 END,
           'message', t.version, t.modified,
           json_object('type', NEW.type, 'key', NEW.key, 'text', NEW.text,
                       'locale', NEW.locale, 'parameters', json(NEW.parameters))
    FROM tasks t
    LEFT JOIN (SELECT e.seq, e.kind, e.version FROM task_events e
               WHERE e.task_id = NEW.task_id ORDER BY e.seq DESC LIMIT 1) last ON 1
    WHERE t.id = NEW.task_id;
END;
