-- The claim's dequeue reads the newest committed queue rows (postgres.sql: claim). A claim's
-- statement takes its snapshot before its pick, whose queries take newer ones (taskstatus_due,
-- taskstatus_pick: VOLATILE plpgsql). When another node claimed a task and handed it back
-- between the two (its claim deleted the queue row, its hand-back inserted a new one), the
-- pick locks the task, and the UPDATE claims its newest version, but a DELETE in the
-- statement sees only the old queue row: the new one outlived the claim, a queue row of a
-- running task, skipped by every later pick but walked over by each (test:
-- test_a_claim_dequeues_a_task_requeued_after_its_statement_began). Every claimed task is
-- locked by then, so no later queue row of it can appear before the claim commits. One call
-- per claim, its plan kept.
CREATE FUNCTION taskstatus_dequeue(ids text[]) RETURNS void LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    DELETE FROM task_queue WHERE id = ANY(ids);
END
$$;

-- The queue rows left so: of tasks no longer queued (or deleted), as taskstatus_sync_queue
-- would have kept them.
DELETE FROM task_queue q USING tasks t
WHERE t.id = q.id AND (t.state <> 'queued' OR t.deleted_at IS NOT NULL);
DELETE FROM task_queue q WHERE NOT EXISTS (SELECT FROM tasks t WHERE t.id = q.id);
