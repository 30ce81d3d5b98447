-- The event log: every change a client can see, per task, numbered 1, 2, 3... (seq). Statement
-- triggers with transition tables write it, one INSERT per statement however many tasks it
-- changed, in the same transaction as the change; each statement that wrote events sends one
-- NOTIFY on taskstatus_events whose payload lists "task_id:first_seq" (chunks of 200, within
-- NOTIFY's 8000 bytes), so every API node learns which tasks have new events when they commit.
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
    ELSIF TG_OP = 'UPDATE' THEN
        WITH changed AS (
            SELECT n.*, o.progress AS o_progress, o.percent_complete AS o_percent,
                   o.attributes AS o_attributes, o.returns AS o_returns, o.state AS o_state,
                   o.attempts AS o_attempts, o.run_at AS o_run_at,
                   o.lease_expires AS o_lease_expires, o.deleted_at AS o_deleted_at,
                   o.completion_status AS o_completion_status,
                   o.unique_name AS o_unique_name, o.description AS o_description,
                   o.parent_name AS o_parent_name, o.priority AS o_priority,
                   o.target_id AS o_target_id, o.target_name AS o_target_name,
                   o.target_type AS o_target_type, o.launched AS o_launched,
                   o.completed AS o_completed,
                   coalesce((SELECT max(e.seq) FROM task_events e WHERE e.task_id = n.id), 0)
                       AS last_seq
            FROM new_rows n JOIN old_rows o ON o.id = n.id
            WHERE n.version <> o.version
        ),
        ev AS (
            INSERT INTO task_events (task_id, seq, kind, version, at, data)
            SELECT c.id, c.last_seq + row_number() OVER (PARTITION BY c.id ORDER BY k.ord),
                   k.kind, c.version, c.modified, k.data
            FROM changed c
            CROSS JOIN LATERAL (
                SELECT 1 AS ord, 'progress' AS kind,
                       jsonb_build_object('progress', c.progress,
                                          'percentComplete', c.percent_complete) AS data
                WHERE c.progress IS DISTINCT FROM c.o_progress
                   OR c.percent_complete <> c.o_percent
                UNION ALL
                SELECT 2, 'attributes',
                       jsonb_build_object('attributes', c.attributes, 'returns', c.returns)
                WHERE c.attributes IS DISTINCT FROM c.o_attributes
                   OR c.returns IS DISTINCT FROM c.o_returns
                UNION ALL
                SELECT 3, 'launched',
                       jsonb_build_object('attempt', c.attempts, 'launched', c.launched)
                WHERE c.state = 'running' AND c.o_state <> 'running'
                UNION ALL
                SELECT 4, 'cancel_requested', jsonb_build_object('state', c.state)
                WHERE c.state = 'cancel_requested' AND c.o_state <> 'cancel_requested'
                UNION ALL
                SELECT 5, 'retried', jsonb_build_object('attempt', c.o_attempts, 'runAt', c.run_at)
                WHERE c.state = 'queued' AND c.o_state IN ('running', 'cancel_requested')
                  AND c.attempts >= c.o_attempts AND c.run_at IS DISTINCT FROM c.o_run_at
                UNION ALL
                SELECT 5, 'released', jsonb_build_object('attempt', c.o_attempts)
                WHERE c.state = 'queued' AND c.o_state IN ('running', 'cancel_requested')
                  AND c.attempts < c.o_attempts
                UNION ALL
                SELECT 5, 'lease_lost', jsonb_build_object('attempt', c.o_attempts, 'state', c.state)
                WHERE c.state IN ('queued', 'dead') AND c.o_state IN ('running', 'cancel_requested')
                  AND c.attempts = c.o_attempts AND c.run_at IS NOT DISTINCT FROM c.o_run_at
                  AND c.o_lease_expires < c.modified
                UNION ALL
                SELECT 6, 'deleted', jsonb_build_object('deleted', c.deleted_at)
                WHERE c.deleted_at IS NOT NULL AND c.o_deleted_at IS NULL
                UNION ALL
                SELECT 7, 'updated', jsonb_build_object('modified', c.modified)
                WHERE c.unique_name IS DISTINCT FROM c.o_unique_name
                   OR c.description IS DISTINCT FROM c.o_description
                   OR c.parent_name IS DISTINCT FROM c.o_parent_name
                   OR c.priority <> c.o_priority
                   OR c.target_id IS DISTINCT FROM c.o_target_id
                   OR c.target_name IS DISTINCT FROM c.o_target_name
                   OR c.target_type IS DISTINCT FROM c.o_target_type
                   OR (c.state = c.o_state AND (c.run_at IS DISTINCT FROM c.o_run_at
                       OR c.launched IS DISTINCT FROM c.o_launched
                       OR c.completed IS DISTINCT FROM c.o_completed))
                UNION ALL
                SELECT 8, 'completed',
                       jsonb_build_object('state', c.state,
                                          'completionStatus', c.completion_status,
                                          'completed', c.completed)
                WHERE c.completion_status IS NOT NULL AND c.o_completion_status IS NULL
            ) k
            RETURNING task_id, seq
        )
        SELECT array_agg(task_id || ':' || first) INTO firsts
        FROM (SELECT task_id, min(seq) AS first FROM ev GROUP BY task_id) f;
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
CREATE TRIGGER tasks_events_updated AFTER UPDATE ON tasks
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION taskstatus_task_events();
CREATE TRIGGER tasks_events_deleted AFTER DELETE ON tasks
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION taskstatus_task_events();

-- A message gets the next number; but when the task's last event is its `completed` of the
-- same version (the message belongs to the change that ended it), the messages take the
-- numbers from there and `completed` moves past them: the end of a task stays its last event.
CREATE FUNCTION taskstatus_message_events() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    firsts text[];
BEGIN
    UPDATE task_events e SET seq = e.seq + m.n
    FROM (SELECT task_id, count(*) AS n FROM new_messages GROUP BY task_id) m, tasks t
    WHERE e.task_id = m.task_id AND t.id = m.task_id AND e.kind = 'completed'
      AND e.version = t.version
      AND e.seq = (SELECT max(x.seq) FROM task_events x WHERE x.task_id = m.task_id);
    WITH counted AS (
        SELECT task_id, count(*) AS n FROM new_messages GROUP BY task_id
    ),
    base AS (
        SELECT c.task_id, t.version, t.modified,
               CASE WHEN last.kind = 'completed' AND last.version = t.version
                    THEN last.seq - c.n - 1 ELSE coalesce(last.seq, 0) END AS seq
        FROM counted c
        JOIN tasks t ON t.id = c.task_id
        LEFT JOIN LATERAL (
            SELECT e.seq, e.kind, e.version FROM task_events e
            WHERE e.task_id = c.task_id ORDER BY e.seq DESC LIMIT 1
        ) last ON true
    ),
    ev AS (
        INSERT INTO task_events (task_id, seq, kind, version, at, data)
        SELECT m.task_id, b.seq + row_number() OVER (PARTITION BY m.task_id ORDER BY m.seq),
               'message', b.version, b.modified,
               jsonb_build_object('type', m.type, 'key', m.key, 'text', m.text,
                                  'locale', m.locale, 'parameters', m.parameters)
        FROM new_messages m JOIN base b ON b.task_id = m.task_id
        RETURNING task_id, seq
    )
    SELECT array_agg(task_id || ':' || first) INTO firsts
    FROM (SELECT task_id, min(seq) AS first FROM ev GROUP BY task_id) f;
    IF firsts IS NOT NULL THEN
        PERFORM taskstatus_notify_events(firsts);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER task_messages_events AFTER INSERT ON task_messages
    REFERENCING NEW TABLE AS new_messages
    FOR EACH STATEMENT EXECUTE FUNCTION taskstatus_message_events();
