-- The claim of one handler, its range read at once (issue 17). A worker claims for a single
-- handler more often than not, and the unlimited claim's pick (0013) then ran three queries
-- in two nested functions: the limits filter (taskstatus_due), which of the one handler has
-- due tasks (an index probe: taskstatus_pick), then that handler's ordered range. The range
-- alone says as much as the probe (nothing due: it reads nothing but its start), and both
-- stepped over the same dead queue entries at the range's start (the claimed tasks' queue
-- rows, until the queue is vacuumed). So for one handler taskstatus_due reads the range
-- itself, under the limits filter as a one-time test; several handlers go to the pick as
-- before. The settings are 0013's (CREATE OR REPLACE resets them): one plan whatever the
-- statistics, kept for the session.
CREATE OR REPLACE FUNCTION taskstatus_due(text[], integer) RETURNS SETOF text
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = off SET enable_sort = off SET enable_bitmapscan = off
    SET enable_hashjoin = off SET enable_mergejoin = off
    SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    IF cardinality($1) = 1 THEN
        RETURN QUERY
        SELECT t.id FROM task_queue q JOIN tasks t ON t.id = q.id
        WHERE q.handler = $1[1] AND q.run_at <= now() AND t.state = 'queued'
          AND NOT EXISTS (SELECT FROM handler_limits l WHERE l.handler = $1[1])
        ORDER BY q.priority DESC, q.run_at
        LIMIT $2
        FOR UPDATE OF t SKIP LOCKED;
    ELSE
        RETURN QUERY
        SELECT taskstatus_pick(ARRAY(
            SELECT h FROM unnest($1) h
            WHERE NOT EXISTS (SELECT FROM handler_limits l WHERE l.handler = h)), $2);
    END IF;
END
$$;
