-- A task's end is one change, so it has one event: `completed` carries the task's final
-- `progress` and `percentComplete`, and an end that also moves the progress no longer writes a
-- `progress` event before it (issue 13: a no-op task wrote 4 events, now 3; the event log cost
-- SQLite's end-to-end rate 12 % where 10 % is the budget). The general trigger follows the
-- same rule, so which trigger writes a change still does not change its events; PostgreSQL's
-- migration 0012 makes the same change.
-- A task inserted already ended keeps its `completed` as it was: the created trigger builds
-- its JSON by concatenation (0005), which cannot escape a progress text, and any function call
-- there would cost every submitted task a statement journal (measured with callgrind: 452 k
-- instructions a submitted task without, 512 k with a json_quote in a trigger of its own).
-- The hot paths' WHENs test the state first: a claim is rejected by the end's trigger, and an
-- end by the claim's, before the ten columns a fast path must leave alone are compared.

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
           (SELECT coalesce(max(e.seq), 0) FROM task_events e WHERE e.task_id = NEW.id)
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
            (SELECT coalesce(max(e.seq), 0) FROM task_events e WHERE e.task_id = NEW.id) + 1,
            'launched', NEW.version, NEW.modified,
            json_object('attempt', NEW.attempts, 'launched', NEW.launched));
END;

DROP TRIGGER task_events_ended;
DROP TRIGGER task_events_ended_progress;

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
            (SELECT coalesce(max(e.seq), 0) FROM task_events e WHERE e.task_id = NEW.id) + 1,
            'completed', NEW.version, NEW.modified,
            json_object('state', NEW.state, 'completionStatus', NEW.completion_status,
                        'completed', NEW.completed, 'progress', NEW.progress,
                        'percentComplete', NEW.percent_complete));
END;
