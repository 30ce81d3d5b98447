-- The event log: every change a client can see, per task, numbered 1, 2, 3... (seq). Triggers
-- write it, so an event is in the same transaction as the change it describes whatever
-- statement made it. `id` only grows (AUTOINCREMENT never reuses one, even after a purge):
-- a process that follows the file reads what came after the last id it saw.
-- A change's events come in the order: progress, attributes, launched, cancel_requested,
-- retried / released / lease_lost, deleted, updated (any other field a reader sees), completed.
-- A change's messages may come before or after its other events, but always before its
-- `completed`, which stays the last event of a task.

CREATE TABLE task_events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    kind    TEXT NOT NULL,
    version INTEGER NOT NULL,
    at      TEXT NOT NULL,
    data    TEXT NOT NULL,
    UNIQUE (task_id, seq)
);

CREATE TRIGGER task_events_created AFTER INSERT ON tasks
BEGIN
    INSERT INTO task_events (task_id, seq, kind, version, at, data)
    VALUES (NEW.id, 1, 'created', NEW.version, NEW.modified,
            json_object('state', NEW.state, 'runAt', NEW.run_at));
    INSERT INTO task_events (task_id, seq, kind, version, at, data)
    SELECT NEW.id, 2, 'completed', NEW.version, NEW.modified,
           json_object('state', NEW.state, 'completionStatus', NEW.completion_status,
                       'completed', NEW.completed)
    WHERE NEW.completion_status IS NOT NULL;
END;

CREATE TRIGGER task_events_changed AFTER UPDATE ON tasks
WHEN NEW.version <> OLD.version
BEGIN
    INSERT INTO task_events (task_id, seq, kind, version, at, data)
    SELECT NEW.id,
           (SELECT coalesce(max(e.seq), 0) FROM task_events e WHERE e.task_id = NEW.id)
               + row_number() OVER (ORDER BY k.ord),
           k.kind, NEW.version, NEW.modified, k.data
    FROM (
        SELECT 1 AS ord, 'progress' AS kind,
               json_object('progress', NEW.progress,
                           'percentComplete', NEW.percent_complete) AS data
        WHERE NEW.progress IS NOT OLD.progress OR NEW.percent_complete <> OLD.percent_complete
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
                           'completed', NEW.completed)
        WHERE NEW.completion_status IS NOT NULL AND OLD.completion_status IS NULL
    ) k;
END;

-- A message gets the next number; but when the task's last event is its `completed` of the
-- same version (the message belongs to the change that ended it), the message takes that
-- number and `completed` moves one on: the end of a task stays its last event.
CREATE TRIGGER task_events_message AFTER INSERT ON task_messages
BEGIN
    UPDATE task_events SET seq = seq + 1
    WHERE task_id = NEW.task_id AND kind = 'completed'
      AND seq = (SELECT max(e.seq) FROM task_events e WHERE e.task_id = NEW.task_id)
      AND version = (SELECT t.version FROM tasks t WHERE t.id = NEW.task_id);
    INSERT INTO task_events (task_id, seq, kind, version, at, data)
    SELECT NEW.task_id,
           CASE WHEN last.kind = 'completed' AND last.version = t.version
                THEN last.seq - 1 ELSE coalesce(last.seq, 0) + 1 END,
           'message', t.version, t.modified,
           json_object('type', NEW.type, 'key', NEW.key, 'text', NEW.text,
                       'locale', NEW.locale, 'parameters', json(NEW.parameters))
    FROM tasks t
    LEFT JOIN (SELECT e.seq, e.kind, e.version FROM task_events e
               WHERE e.task_id = NEW.task_id ORDER BY e.seq DESC LIMIT 1) last ON 1
    WHERE t.id = NEW.task_id;
END;

CREATE TRIGGER task_events_purged AFTER DELETE ON tasks
BEGIN
    DELETE FROM task_events WHERE task_id = OLD.id;
END;
