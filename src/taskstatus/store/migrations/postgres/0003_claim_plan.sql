-- The claim's pick, with a plan that does not depend on table statistics. Without them (a
-- fresh database, or autovacuum off as on CI) the planner guesses that a handful of rows are
-- due, reads the whole queue and sorts it: 19 ms for a claim of 8 at 10,000 queued, growing
-- with the backlog. The settings below apply while the function's query is planned and run,
-- and nowhere else (not to the claim's UPDATE or its triggers), so the one plan left is the
-- ordered, limited scan of task_queue_due with a key lookup of each task: a claim costs the
-- same at any backlog whatever the planner knows. PL/pgSQL keeps the plan for the session
-- (a SQL function would plan its query at every call, 0.2 ms more per claim).
--
-- $1 is the handlers, $2 the most tasks to pick. The tasks are locked (skipping those another
-- claimer or writer holds), as every writer locks a task before its queue row: no deadlock.
-- A task whose row changed after the statement began is rechecked against `state` under the
-- lock, so a task another claimer just took is passed over rather than counted.
CREATE FUNCTION taskstatus_due(text[], integer) RETURNS SETOF text
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = off SET enable_sort = off SET enable_bitmapscan = off
    SET enable_hashjoin = off SET enable_mergejoin = off
AS $$
BEGIN
    RETURN QUERY
    SELECT t.id FROM task_queue q JOIN tasks t ON t.id = q.id
    WHERE q.run_at <= now() AND q.handler = ANY($1) AND t.state = 'queued'
    ORDER BY q.priority DESC, q.run_at
    LIMIT $2
    FOR UPDATE OF t SKIP LOCKED;
END
$$;

-- Every claim deletes queue rows (the trigger of 0001), so task_queue is small and churns:
-- where autovacuum runs, vacuum it after a fixed number of dead rows rather than a fraction
-- of the table. Without autovacuum the store vacuums it itself (PostgresStore.recover).
ALTER TABLE task_queue SET (
    autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000,
    autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 5000
);
