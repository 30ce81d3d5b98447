-- Tasks by completion time, for the dashboard's throughput (tasks finished per minute over the
-- last hour): a range scan of the last hour's finishes, not a walk over every stored task.
CREATE INDEX tasks_completed ON tasks (completed) WHERE completed IS NOT NULL;
