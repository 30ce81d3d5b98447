-- The task's last event seq on its row (issue 13): the claim and the finish number their
-- events from the row they update rather than by a lookup of max(seq) per task
-- (taskstatus_last_seqs, 0010: a third of what the log cost a claim, in callgrind's count of
-- the backend's instructions, bench/pg_event_log_cost.py). A plain column of no index, NULL
-- (no byte) on a new task: a claim's update is heap-only when the page has room for the new
-- version, and bytes cost it that room (8 bytes more at the insert, a value here and
-- events_version, made 10 % of the claims leave their page, which cost more than the lookups
-- saved; the 4 bytes the claim adds cost 5 %).
--
-- What the row says of the task's last seq (postgres.sql):
--  - events_version = version and last_seq set: `last_seq` and the events of `event_kinds` (0010: one per
--    kind, but an end's progress, which rides on its `completed`). The statement that made
--    the row's version wrote its events itself and set both: the claim (last_seq + 1 for
--    `launched`, event_kinds NULL) and the finish (last_seq: the last seq before its events
--    and the messages it adds, whose events its messages' trigger writes in the same
--    statement, after its own; its kinds on top). The finish so counts its events from the
--    kinds it stores anyway, not a second time from the columns in its SET;
--  - else last_seq NULL and version 1: 1, a task as the insert left it, `created` its one
--    event (the store marks the tasks inserted with messages -1 in the insert's transaction,
--    postgres.sql seqs_unknown; a task inserted ended is never claimed nor finished before a
--    change that moves its version);
--  - else nothing: the claim and the finish look it up for that task (taskstatus_last_seq).
-- Every other change moves the version without setting events_version (the general trigger
-- writes its events), and messages come only with a change that moves the version (an update,
-- a report, a finish, recovery's notes after its update), so after any other event the row
-- says nothing.
-- No writer reads a stale value: the claim and the finish read it from the row they update,
-- under its lock; under READ COMMITTED an UPDATE that waited for another's lock evaluates its
-- SET again on the newest committed version of the row, with what that writer left there;
-- and the lookup is a VOLATILE function, whose query takes a fresh snapshot, which sees the
-- events of a change that committed while the statement waited. The primary key (task_id,
-- seq) still turns any miscount into an error, never into a lost event. (A task inserted by
-- hand, not by create_tasks, at version 1 with more events than `created` would be one.)
-- Existing tasks keep last_seq NULL, which vouches for nothing once the version moved past 1
-- (the statements' rule asks for a value): their next claim or finish looks their seq up, and
-- sets it. That leaves the migration to mark only the tasks still at version 1 (few: queued
-- ones never claimed), not to rewrite every row of a large history in one transaction.
ALTER TABLE tasks ADD COLUMN last_seq integer;
UPDATE tasks SET last_seq = -1 WHERE version = 1;

CREATE FUNCTION taskstatus_last_seq(task text) RETURNS integer LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RETURN (SELECT coalesce(max(e.seq), 0) FROM task_events e WHERE e.task_id = task COLLATE "C");
END
$$;

-- The rule above, in one place for the claim and the finish: a task's last seq as its row
-- says, else looked up (the lookup only runs in that branch). One expression in a SQL
-- function, which the planner inlines into the statement (VOLATILE because the lookup is).
CREATE FUNCTION taskstatus_row_last_seq(task text, version integer, events_version integer,
                                        last_seq integer, event_kinds integer)
RETURNS integer LANGUAGE sql VOLATILE AS $$
    SELECT CASE WHEN events_version = version AND last_seq IS NOT NULL
                THEN last_seq + coalesce((event_kinds & 129 = 1)::int  -- an end's progress
                                         + (event_kinds & 2 <> 0)::int  -- rides on `completed`
                                         + (event_kinds & 16 <> 0)::int
                                         + (event_kinds & 32 <> 0)::int
                                         + (event_kinds & 128 <> 0)::int, 0)
                WHEN last_seq IS NULL AND version = 1 THEN 1
                ELSE taskstatus_last_seq(task) END
$$;

-- Whether a finish's outcome is a worker's end of its run (a leased task ends or goes back to
-- the queue): the changes whose events the finish writes itself (postgres.sql). Inlined too.
CREATE FUNCTION taskstatus_run_ends(outcome text, state text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT outcome IN ('queued', 'succeeded', 'failed', 'cancelled', 'dead')
       AND state IN ('running', 'cancel_requested')
$$;
