-- The event log: every change a client can see, per task, numbered 1, 2, 3... (seq). Triggers
-- write it in the same transaction as the change, and NOTIFY taskstatus_events with
-- "task_id:first_seq" payloads (a batch insert lists up to 200 pairs per NOTIFY, within its
-- 8000 bytes), so every API node learns which tasks have news when they commit.
-- A change's events come in the order: progress, attributes, launched, cancel_requested,
-- retried / released / lease_lost, deleted, updated (any other field a reader sees), completed.
-- A change's messages may come before or after its other events, but always before its
-- `completed`, which stays the last event of a task.
-- Writers of a task's events hold the task's row lock (they change the task, or insert its
-- messages in the statement that changes it), so max(seq) + 1 cannot race; the primary key
-- would turn a race into an error, never into a lost event.

CREATE TABLE task_events (
    task_id text COLLATE "C" NOT NULL,
    seq     integer NOT NULL,
    kind    text COLLATE "C" NOT NULL,
    version integer NOT NULL,
    at      timestamptz NOT NULL,
    data    jsonb NOT NULL,
    PRIMARY KEY (task_id, seq)
);

CREATE FUNCTION taskstatus_notify_events(firsts text[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    chunk integer;
BEGIN
    FOR chunk IN 0 .. (coalesce(array_length(firsts, 1), 0) - 1) / 200 LOOP
        PERFORM pg_notify('taskstatus_events',
                          array_to_string(firsts[chunk * 200 + 1 : chunk * 200 + 200], ','));
    END LOOP;
END
$$;

CREATE FUNCTION taskstatus_task_events() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    firsts text[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        WITH ev AS (
            INSERT INTO task_events (task_id, seq, kind, version, at, data)
            SELECT n.id, k.seq, k.kind, n.version, n.modified, k.data
            FROM new_rows n
            CROSS JOIN LATERAL (
                SELECT 1 AS seq, 'created' AS kind,
                       jsonb_build_object('state', n.state, 'runAt', n.run_at) AS data
                UNION ALL
                SELECT 2, 'completed',
                       jsonb_build_object('state', n.state,
                                          'completionStatus', n.completion_status,
                                          'completed', n.completed)
                WHERE n.completion_status IS NOT NULL
            ) k
            RETURNING task_id, seq
        )
        SELECT array_agg(task_id || ':1') INTO firsts FROM ev WHERE seq = 1;
    ELSE
        DELETE FROM task_events WHERE task_id IN (SELECT id FROM old_rows);
    END IF;
    IF firsts IS NOT NULL THEN
        PERFORM taskstatus_notify_events(firsts);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER tasks_events_inserted AFTER INSERT ON tasks
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION taskstatus_task_events();
-- A change of a task: a row trigger (its statements' plans are cached; a statement trigger's
-- queries over transition tables are planned at every call, which cost a claim or a finish
-- about 0.5 ms), only when the version moved (a heartbeat moves none: no call at all).
CREATE FUNCTION taskstatus_task_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    last integer;
    kinds text[] := '{}';
    datas jsonb[] := '{}';
BEGIN
    IF NEW.progress IS DISTINCT FROM OLD.progress
       OR NEW.percent_complete <> OLD.percent_complete THEN
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
                                             'completed', NEW.completed);
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

CREATE TRIGGER tasks_events_updated AFTER UPDATE ON tasks
    FOR EACH ROW WHEN (OLD.version IS DISTINCT FROM NEW.version)
    EXECUTE FUNCTION taskstatus_task_changed();
CREATE TRIGGER tasks_events_deleted AFTER DELETE ON tasks
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION taskstatus_task_events();

-- A message gets the next number; but when the task's last event is its `completed` of the
-- same version (the message belongs to the change that ended it), the message takes its
-- number and `completed` moves one on: the end of a task stays its last event.
CREATE FUNCTION taskstatus_message_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    task_version integer;
    task_modified timestamptz;
    last_seq integer;
    last_kind text;
    last_version integer;
    at_seq integer;
BEGIN
    SELECT t.version, t.modified INTO task_version, task_modified
    FROM tasks t WHERE t.id = NEW.task_id;
    IF NOT FOUND THEN
        RETURN NULL;
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

CREATE TRIGGER task_messages_events AFTER INSERT ON task_messages
    FOR EACH ROW EXECUTE FUNCTION taskstatus_message_event();
