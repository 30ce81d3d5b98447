-- A lighter claim (issue 17): two pieces of server work every claim paid for nothing.
--
-- The task counts' update trigger (0002) is a statement trigger over transition tables, whose
-- queries PostgreSQL plans at every call (0.12 ms of a claim of 8 here) and which fires for
-- every UPDATE of `tasks`, even one that changes no counted column. A worker's bookkeeping
-- transaction (PostgresStore._lax: a claim, limited or not, a heartbeat, a progress report)
-- changes no completion status, creation time or deletion, so no count: it says so in the
-- transaction-local setting taskstatus.counts (postgres.sql: `lax`), and the trigger is
-- skipped there. Every other writer leaves the setting unset and keeps the trigger. (A column
-- list, AFTER UPDATE OF completion_status, ..., would say the same without a setting, but
-- PostgreSQL refuses column lists on triggers with transition tables.)
DROP TRIGGER tasks_count_updated ON tasks;
CREATE TRIGGER tasks_count_updated AFTER UPDATE ON tasks
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT
    WHEN (current_setting('taskstatus.counts', true) IS DISTINCT FROM 'unchanged')
    EXECUTE FUNCTION taskstatus_count_tasks();

-- The tasks' last seqs (0010), in PL/pgSQL: the same query, but its plan is kept for the
-- session, where the SQL function planned it at every call (no difference was measurable in
-- a claim's round trip on this machine's noise; it costs nothing either).
-- A VOLATILE PL/pgSQL function takes a fresh snapshot for each of its queries, as the SQL
-- function did: it still sees the events of a change that committed while the calling
-- statement waited for a lock.
CREATE OR REPLACE FUNCTION taskstatus_last_seqs(ids text[])
RETURNS TABLE (task_id text, last integer) LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RETURN QUERY
    SELECT u.id, (SELECT coalesce(max(e.seq), 0) FROM task_events e
                  WHERE e.task_id = u.id COLLATE "C")
    FROM unnest(ids) AS u(id);
END
$$;
