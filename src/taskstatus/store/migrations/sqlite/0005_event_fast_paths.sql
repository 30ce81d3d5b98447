-- The event log's hot paths: the changes most tasks make get triggers of their own.
-- Measured (issue 13, e2e_tasks_per_s with the log against without): the general trigger cost a
-- task about as much SQLite work as the task's own writes, mostly in the ephemeral tables its
-- body builds (the UNION ALL, the window function, an INSERT ... SELECT reading the table it
-- writes) at every row, events or not. A claim (queued -> running) and an end (a pending task
-- becomes succeeded, failed or cancelled, perhaps with its last progress) now write exactly the
-- events the general trigger would give them, with plain VALUES; the general trigger takes every
-- other change. The WHENs are exclusive, so one trigger writes a change's events and they keep
-- the documented order (SQLite documents no order among several triggers).
-- Their WHENs use no `IN` list of three or more values: such a list is an ephemeral table too,
-- built at every row a trigger is tried on.
--
-- What the fast paths require of a change, beside its state: nothing else a reader sees moved
-- (these columns are those the general trigger's `progress`, `attributes`, `deleted` and
-- `updated` events look at); a claim also keeps the progress, and an end without a progress
-- change is `ended`, with one `ended_progress`. "Ended" is completion_status set, not `dead`
-- (which may come with `lease_lost`).

-- A submit inserts its tasks one statement each, and a statement firing a trigger that may
-- abort (a function call, such as json_object, or a constraint that aborts the statement) keeps
-- a statement journal: a copy of every page it changes, which cost an insert more than its
-- event. So the created trigger builds its JSON by concatenation (its values are an enum name
-- and ISO times the store writes, none of which needs escaping), and insert_task is INSERT OR
-- ROLLBACK (a conflict ends the transaction, which the store rolls back on any error anyway).

DROP TRIGGER task_events_created;

CREATE TRIGGER task_events_created AFTER INSERT ON tasks
BEGIN
    INSERT INTO task_events (task_id, seq, kind, version, at, data)
    VALUES (NEW.id, 1, 'created', NEW.version, NEW.modified,
            '{"state":"' || NEW.state || '","runAt":"' || NEW.run_at || '"}');
    INSERT INTO task_events (task_id, seq, kind, version, at, data)
    SELECT NEW.id, 2, 'completed', NEW.version, NEW.modified,
           '{"state":"' || NEW.state || '","completionStatus":"' || NEW.completion_status
               || '","completed":' || coalesce('"' || NEW.completed || '"', 'null') || '}'
    WHERE NEW.completion_status IS NOT NULL;
END;

DROP TRIGGER task_events_changed;

CREATE TRIGGER task_events_changed AFTER UPDATE ON tasks
WHEN NEW.version <> OLD.version
 AND NOT ((NEW.attributes, NEW.returns, NEW.deleted_at, NEW.unique_name, NEW.description,
           NEW.parent_name, NEW.priority, NEW.target_id, NEW.target_type, NEW.target_name)
       IS (OLD.attributes, OLD.returns, OLD.deleted_at, OLD.unique_name, OLD.description,
           OLD.parent_name, OLD.priority, OLD.target_id, OLD.target_type, OLD.target_name)
      AND ((NEW.state = 'running' AND OLD.state = 'queued'
            AND NEW.progress IS OLD.progress AND NEW.percent_complete = OLD.percent_complete)
           OR (NEW.completion_status IS NOT NULL AND OLD.completion_status IS NULL
               AND NEW.state <> 'dead')))
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

CREATE TRIGGER task_events_launched AFTER UPDATE ON tasks
WHEN NEW.version <> OLD.version
 AND (NEW.attributes, NEW.returns, NEW.deleted_at, NEW.unique_name, NEW.description,
      NEW.parent_name, NEW.priority, NEW.target_id, NEW.target_type, NEW.target_name)
  IS (OLD.attributes, OLD.returns, OLD.deleted_at, OLD.unique_name, OLD.description,
      OLD.parent_name, OLD.priority, OLD.target_id, OLD.target_type, OLD.target_name)
 AND NEW.state = 'running' AND OLD.state = 'queued'
 AND NEW.progress IS OLD.progress AND NEW.percent_complete = OLD.percent_complete
BEGIN
    INSERT INTO task_events (task_id, seq, kind, version, at, data)
    VALUES (NEW.id,
            (SELECT coalesce(max(e.seq), 0) FROM task_events e WHERE e.task_id = NEW.id) + 1,
            'launched', NEW.version, NEW.modified,
            json_object('attempt', NEW.attempts, 'launched', NEW.launched));
END;

CREATE TRIGGER task_events_ended AFTER UPDATE ON tasks
WHEN NEW.version <> OLD.version
 AND (NEW.attributes, NEW.returns, NEW.deleted_at, NEW.unique_name, NEW.description,
      NEW.parent_name, NEW.priority, NEW.target_id, NEW.target_type, NEW.target_name)
  IS (OLD.attributes, OLD.returns, OLD.deleted_at, OLD.unique_name, OLD.description,
      OLD.parent_name, OLD.priority, OLD.target_id, OLD.target_type, OLD.target_name)
 AND NEW.completion_status IS NOT NULL AND OLD.completion_status IS NULL AND NEW.state <> 'dead'
 AND NEW.progress IS OLD.progress AND NEW.percent_complete = OLD.percent_complete
BEGIN
    INSERT INTO task_events (task_id, seq, kind, version, at, data)
    VALUES (NEW.id,
            (SELECT coalesce(max(e.seq), 0) FROM task_events e WHERE e.task_id = NEW.id) + 1,
            'completed', NEW.version, NEW.modified,
            json_object('state', NEW.state, 'completionStatus', NEW.completion_status,
                        'completed', NEW.completed));
END;

CREATE TRIGGER task_events_ended_progress AFTER UPDATE ON tasks
WHEN NEW.version <> OLD.version
 AND (NEW.attributes, NEW.returns, NEW.deleted_at, NEW.unique_name, NEW.description,
      NEW.parent_name, NEW.priority, NEW.target_id, NEW.target_type, NEW.target_name)
  IS (OLD.attributes, OLD.returns, OLD.deleted_at, OLD.unique_name, OLD.description,
      OLD.parent_name, OLD.priority, OLD.target_id, OLD.target_type, OLD.target_name)
 AND NEW.completion_status IS NOT NULL AND OLD.completion_status IS NULL AND NEW.state <> 'dead'
 AND (NEW.progress IS NOT OLD.progress OR NEW.percent_complete <> OLD.percent_complete)
BEGIN
    INSERT INTO task_events (task_id, seq, kind, version, at, data)
    VALUES (NEW.id,
            (SELECT coalesce(max(e.seq), 0) FROM task_events e WHERE e.task_id = NEW.id) + 1,
            'progress', NEW.version, NEW.modified,
            json_object('progress', NEW.progress, 'percentComplete', NEW.percent_complete));
    INSERT INTO task_events (task_id, seq, kind, version, at, data)
    VALUES (NEW.id,
            (SELECT coalesce(max(e.seq), 0) FROM task_events e WHERE e.task_id = NEW.id) + 1,
            'completed', NEW.version, NEW.modified,
            json_object('state', NEW.state, 'completionStatus', NEW.completion_status,
                        'completed', NEW.completed));
END;
