-- The pick by handler. task_queue_due orders the whole queue, and the pick filters it by the
-- claimer's handlers: a worker whose handlers had nothing due read every queue row of the
-- others' on each claim (about 20 ms at 100,000 queued here), and one whose handler's tasks
-- sat behind another's backlog read that backlog at each claim. Each handler's queue rows in
-- queue order (task_queue_handler_due) let the pick first keep the handlers that have a due
-- task (one index probe each) and read only theirs: none, nothing read; one, that handler's
-- ordered range; several, the ordered scan of 0003 over just those handlers.
-- Both picks' plans stay the ones the functions' settings leave (0003, 0009), whatever the
-- statistics say; CREATE OR REPLACE resets a function's settings, so they are all here again.
CREATE INDEX task_queue_handler_due ON task_queue (handler, priority DESC, run_at);

CREATE OR REPLACE FUNCTION taskstatus_pick(text[], integer) RETURNS SETOF text
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = off SET enable_sort = off SET enable_bitmapscan = off
    SET enable_hashjoin = off SET enable_mergejoin = off
    SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    busy text[] := ARRAY(
        SELECT h FROM unnest($1) h
        WHERE EXISTS (SELECT FROM task_queue b WHERE b.handler = h AND b.run_at <= now()));
BEGIN
    IF cardinality(busy) = 1 THEN
        RETURN QUERY
        SELECT t.id FROM task_queue q JOIN tasks t ON t.id = q.id
        WHERE q.handler = busy[1] AND q.run_at <= now() AND t.state = 'queued'
        ORDER BY q.priority DESC, q.run_at
        LIMIT $2
        FOR UPDATE OF t SKIP LOCKED;
    ELSIF cardinality(busy) > 1 THEN
        RETURN QUERY
        SELECT t.id FROM task_queue q JOIN tasks t ON t.id = q.id
        WHERE q.run_at <= now() AND q.handler = ANY(busy) AND t.state = 'queued'
        ORDER BY q.priority DESC, q.run_at
        LIMIT $2
        FOR UPDATE OF t SKIP LOCKED;
    END IF;
END
$$;

-- The unlimited claim's pick (0008): the pick above over the handlers without a limit.
CREATE OR REPLACE FUNCTION taskstatus_due(text[], integer) RETURNS SETOF text
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = off SET enable_sort = off SET enable_bitmapscan = off
    SET enable_hashjoin = off SET enable_mergejoin = off
    SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    RETURN QUERY
    SELECT taskstatus_pick(ARRAY(
        SELECT h FROM unnest($1) h
        WHERE NOT EXISTS (SELECT FROM handler_limits l WHERE l.handler = h)), $2);
END
$$;
