-- A task's end is one change, so it has one event (issue 13): `completed` carries the task's
-- final `progress` and `percentComplete`, and an end that also moves the progress no longer
-- writes a `progress` event before it. SQLite's migration 0006 makes the same change, and the
-- finish statement (postgres.sql) follows the same rule for the changes it writes itself.
-- A task inserted already ended keeps its `completed` as it was (SQLite's cannot escape a
-- progress text there; the snapshot that starts every stream has it). Events written before
-- keep their data: readers take a `completed` without progress as one that says nothing of it.

CREATE OR REPLACE FUNCTION taskstatus_task_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    last integer;
    kinds text[] := '{}';
    datas jsonb[] := '{}';
BEGIN
    IF (NEW.progress IS DISTINCT FROM OLD.progress
        OR NEW.percent_complete <> OLD.percent_complete)
       AND NOT (NEW.completion_status IS NOT NULL AND OLD.completion_status IS NULL) THEN
        kinds := kinds || 'progress'::text;
        datas := datas || jsonb_build_object('progress', NEW.progress,
                                             'percentComplete', NEW.percent_complete);
    END IF;
    IF NEW.attributes IS DISTINCT FROM OLD.attributes OR NEW.returns IS DISTINCT FROM OLD.returns
    THEN
        kinds := kinds || 'attributes'::text;
        datas := datas || jsonb_build_object('attributes', NEW.attributes,
                                             'returns', NEW.returns);
    END IF;
    IF NEW.state = 'running' AND OLD.state <> 'running' THEN
        kinds := kinds || 'launched'::text;
        datas := datas || jsonb_build_object('attempt', NEW.attempts, 'launched', NEW.launched);
    END IF;
    IF NEW.state = 'cancel_requested' AND OLD.state <> 'cancel_requested' THEN
        kinds := kinds || 'cancel_requested'::text;
        datas := datas || jsonb_build_object('state', NEW.state);
    END IF;
    IF NEW.state = 'queued' AND OLD.state IN ('running', 'cancel_requested') THEN
        IF NEW.attempts < OLD.attempts THEN
            kinds := kinds || 'released'::text;
            datas := datas || jsonb_build_object('attempt', OLD.attempts);
        ELSIF NEW.run_at IS DISTINCT FROM OLD.run_at THEN
            kinds := kinds || 'retried'::text;
            datas := datas || jsonb_build_object('attempt', OLD.attempts, 'runAt', NEW.run_at);
        END IF;
    END IF;
    IF NEW.state IN ('queued', 'dead') AND OLD.state IN ('running', 'cancel_requested')
       AND NEW.attempts = OLD.attempts AND NEW.run_at IS NOT DISTINCT FROM OLD.run_at
       AND OLD.lease_expires < NEW.modified THEN
        kinds := kinds || 'lease_lost'::text;
        datas := datas || jsonb_build_object('attempt', OLD.attempts, 'state', NEW.state);
    END IF;
    IF NEW.deleted_at IS NOT NULL AND OLD.deleted_at IS NULL THEN
        kinds := kinds || 'deleted'::text;
        datas := datas || jsonb_build_object('deleted', NEW.deleted_at);
    END IF;
    IF NEW.unique_name IS DISTINCT FROM OLD.unique_name
       OR NEW.description IS DISTINCT FROM OLD.description
       OR NEW.parent_name IS DISTINCT FROM OLD.parent_name OR NEW.priority <> OLD.priority
       OR NEW.target_id IS DISTINCT FROM OLD.target_id
       OR NEW.target_name IS DISTINCT FROM OLD.target_name
       OR NEW.target_type IS DISTINCT FROM OLD.target_type
       OR (NEW.state = OLD.state AND (NEW.run_at IS DISTINCT FROM OLD.run_at
           OR NEW.launched IS DISTINCT FROM OLD.launched
           OR NEW.completed IS DISTINCT FROM OLD.completed)) THEN
        kinds := kinds || 'updated'::text;
        datas := datas || jsonb_build_object('modified', NEW.modified);
    END IF;
    IF NEW.completion_status IS NOT NULL AND OLD.completion_status IS NULL THEN
        kinds := kinds || 'completed'::text;
        datas := datas || jsonb_build_object('state', NEW.state,
                                             'completionStatus', NEW.completion_status,
                                             'completed', NEW.completed,
                                             'progress', NEW.progress,
                                             'percentComplete', NEW.percent_complete);
    END IF;
    IF cardinality(kinds) = 0 THEN
        RETURN NULL;
    END IF;
    SELECT coalesce(max(e.seq), 0) INTO last FROM task_events e WHERE e.task_id = NEW.id;
    INSERT INTO task_events (task_id, seq, kind, version, at, data)
    SELECT NEW.id, last + i, kinds[i], NEW.version, NEW.modified, datas[i]
    FROM generate_subscripts(kinds, 1) AS i;
    PERFORM pg_notify('taskstatus_events', NEW.id || ':' || (last + 1));
    RETURN NULL;
END
$$;
