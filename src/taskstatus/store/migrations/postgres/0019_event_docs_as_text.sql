-- The hot paths' event data as JSON text (issue 13). A no-op task's three events (`created`
-- at the insert, `launched` at the claim, `completed` at the finish) were each built by
-- jsonb_build_object, which looks up every argument's type and output function at every call
-- and then converts its tree to jsonb's binary form: ~9.6 k instructions for two keys, ~22 k
-- for the five of `completed` (callgrind, bench/pg_event_log_cost.py), most of what made the
-- finish's one event cost more than the claim's. Concatenated text costs ~4 k and ~5.5 k,
-- and storing text skips jsonb's conversion (and json's parse, ~4.5 k more).
--
-- `doc`: an event's data as JSON text, written by the writers below (the claim's `launched`
-- and the finish's events, postgres.sql; the insert's `created` and `completed`); `data`
-- (jsonb) stays for the other writers (the general trigger, the messages' trigger) and for the
-- rows written before. Exactly one of the two is set on a row; readers take either
-- (postgres.py events()). No row is rewritten: a column that is NULL costs nothing, and
-- dropping NOT NULL is a catalog change.
-- Every piece of text a writer puts in a doc is JSON: numbers and states as they are (the
-- states a task's CHECK allows need no escaping), every other text and every time through
-- to_json (the same ISO form with the session's time zone as jsonb's), NULL as null.
ALTER TABLE task_events ALTER COLUMN data DROP NOT NULL, ADD COLUMN doc text;

-- The two hot events' docs, inlined into the statements (SQL functions of one expression,
-- STABLE as to_json of a time is, each argument used once), so the statements' text stays
-- within psycopg's 4 KiB statement cache and the rule is written once.
CREATE FUNCTION taskstatus_launched_doc(attempt integer, launched timestamptz)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT '{"attempt":' || attempt::text || ',"launched":' || to_json(launched)::text || '}'
$$;

CREATE FUNCTION taskstatus_completed_doc(state text, completion_status text,
                                         completed timestamptz, progress text,
                                         percent_complete integer)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT '{"state":"' || state || '","completionStatus":' || to_json(completion_status)::text
           || ',"completed":' || to_json(completed)::text
           || ',"progress":' || coalesce(to_json(progress)::text, 'null')
           || ',"percentComplete":' || coalesce(percent_complete::text, 'null') || '}'
$$;

-- The insert's events (0004), their data as docs.
CREATE OR REPLACE FUNCTION taskstatus_task_events() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    firsts text[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        WITH ev AS (
            INSERT INTO task_events (task_id, seq, kind, version, at, doc)
            SELECT n.id, k.seq, k.kind, n.version, n.modified, k.doc
            FROM new_rows n
            CROSS JOIN LATERAL (
                SELECT 1 AS seq, 'created' AS kind,
                       '{"state":"' || n.state || '","runAt":'
                       || coalesce(to_json(n.run_at)::text, 'null') || '}' AS doc
                UNION ALL
                SELECT 2, 'completed',
                       json_build_object('state', n.state,
                                         'completionStatus', n.completion_status,
                                         'completed', n.completed)::text
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
