-- How many tasks there are per completion status ('' while pending) and UTC day of creation,
-- deleted ones left out: a count of a list by completion status is then a sum over days,
-- not a walk over every matching task. Statement triggers with transition tables keep it
-- exact through every write; a statement that changes no count (a claim, a heartbeat, a
-- progress report) writes nothing here.
CREATE TABLE task_counts (
    status text COLLATE "C" NOT NULL,
    day    date NOT NULL,
    n      bigint NOT NULL,
    PRIMARY KEY (status, day)
);

CREATE FUNCTION taskstatus_count_tasks() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO task_counts (status, day, n)
        SELECT coalesce(completion_status, ''), (created AT TIME ZONE 'UTC')::date, count(*)
        FROM new_rows WHERE deleted_at IS NULL
        GROUP BY 1, 2 ORDER BY 1, 2
        ON CONFLICT (status, day) DO UPDATE SET n = task_counts.n + excluded.n;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO task_counts (status, day, n)
        SELECT status, day, sum(n) FROM (
            SELECT coalesce(completion_status, '') AS status,
                   (created AT TIME ZONE 'UTC')::date AS day, 1 AS n
            FROM new_rows WHERE deleted_at IS NULL
            UNION ALL
            SELECT coalesce(completion_status, ''), (created AT TIME ZONE 'UTC')::date, -1
            FROM old_rows WHERE deleted_at IS NULL
        ) d
        GROUP BY status, day HAVING sum(n) <> 0 ORDER BY status, day
        ON CONFLICT (status, day) DO UPDATE SET n = task_counts.n + excluded.n;
    ELSE
        INSERT INTO task_counts (status, day, n)
        SELECT coalesce(completion_status, ''), (created AT TIME ZONE 'UTC')::date, -count(*)
        FROM old_rows WHERE deleted_at IS NULL
        GROUP BY 1, 2 ORDER BY 1, 2
        ON CONFLICT (status, day) DO UPDATE SET n = task_counts.n + excluded.n;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER tasks_count_inserted AFTER INSERT ON tasks
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION taskstatus_count_tasks();
CREATE TRIGGER tasks_count_updated AFTER UPDATE ON tasks
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION taskstatus_count_tasks();
CREATE TRIGGER tasks_count_deleted AFTER DELETE ON tasks
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION taskstatus_count_tasks();

-- The tasks stored before this migration. CREATE TRIGGER above locked the table against
-- writes until this transaction commits, so none is counted twice or missed.
INSERT INTO task_counts (status, day, n)
SELECT coalesce(completion_status, ''), (created AT TIME ZONE 'UTC')::date, count(*)
FROM tasks WHERE deleted_at IS NULL
GROUP BY 1, 2;
