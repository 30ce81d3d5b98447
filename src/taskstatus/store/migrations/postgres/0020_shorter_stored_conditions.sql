-- Shorter stored conditions on `tasks` (issue 17): the WHEN of the two row triggers every
-- claim reaches, and the CHECK constraints (below). PostgreSQL keeps a trigger's WHEN as the
-- text of its node tree (pg_trigger.tgqual) and, in each statement that changes a row of the
-- table, reads that text back into a tree and prepares it, once per trigger: its cost grows
-- with the text's length, whatever the condition then says (~40 backend instructions a
-- character, callgrind: bench/pg_claim_cost.py). A claim of 8 paid ~160 k instructions for
-- its three (these two and the counts' of 0011), of ~2.3 M.
-- The conditions below are the same ones, said in fewer nodes:
--
-- tasks_sync_queue (0006): ((OLD queued OR NEW queued) AND NOT (OLD queued AND NEW running)).
-- With N = NEW.state = 'queued', O = OLD.state = 'queued', R = NEW.state = 'running' (the state
-- is NOT NULL, and N excludes R): N OR (O AND NOT R), three comparisons instead of four.
DROP TRIGGER tasks_sync_queue ON tasks;
CREATE TRIGGER tasks_sync_queue
    AFTER UPDATE OF state, priority, run_at, deleted_at ON tasks
    FOR EACH ROW
    WHEN (NEW.state = 'queued' OR (OLD.state = 'queued' AND NEW.state <> 'running'))
    EXECUTE FUNCTION taskstatus_sync_queue();

-- tasks_events_updated (0016): the version moved, and events_version is neither version nor
-- -version (a statement that wrote the change's events itself, of either sign). version is NOT
-- NULL and never below 1 (1 at the insert, one more at each change), so the first is `<>`
-- and the other two are one: abs(events_version) IS DISTINCT FROM version (NULL: distinct).
DROP TRIGGER tasks_events_updated ON tasks;
CREATE TRIGGER tasks_events_updated AFTER UPDATE ON tasks
    FOR EACH ROW
    WHEN (OLD.version <> NEW.version AND abs(NEW.events_version) IS DISTINCT FROM NEW.version)
    EXECUTE FUNCTION taskstatus_task_changed();

-- The same holds for CHECK constraints (pg_constraint.conbin), read back in every statement
-- that writes a row of `tasks`: three of 0001 (~3,650 characters, ~165 k instructions of a
-- claim of 8) become one, which says the same in fewer nodes: a task with no completion
-- status is queued, running or cancel_requested, one with a status is in an end state (the
-- seven states, each on its side), and its percent complete is within 0..100. NOT VALID: the
-- rows there are were checked by the three (it skips a scan of the whole table under this
-- migration's lock); every row written from now on is checked by this one.
ALTER TABLE tasks
    DROP CONSTRAINT tasks_state_check,
    DROP CONSTRAINT tasks_check,
    DROP CONSTRAINT tasks_percent_complete_check,
    ADD CONSTRAINT tasks_valid CHECK (
        CASE WHEN completion_status IS NULL THEN state IN ('queued', 'running', 'cancel_requested')
             ELSE state IN ('succeeded', 'failed', 'cancelled', 'dead') END
        AND percent_complete BETWEEN 0 AND 100) NOT VALID;
