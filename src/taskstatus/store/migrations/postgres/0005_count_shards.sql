-- task_counts in shards. Every finish and every submit adds to the row of its status and
-- day, and writers of one row wait for each other's commit (and its WAL flush): with two
-- workers finishing at once, most of a finish's time went to waiting for the other's lock
-- (bench: Lock:transactionid). Each statement now adds to one of 16 rows per status and
-- day, picked at random, so concurrent writers rarely meet; a count sums them all as before.
ALTER TABLE task_counts ADD COLUMN shard smallint NOT NULL DEFAULT 0;
ALTER TABLE task_counts DROP CONSTRAINT task_counts_pkey, ADD PRIMARY KEY (status, day, shard);

CREATE OR REPLACE FUNCTION taskstatus_count_tasks() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    s smallint := floor(random() * 16)::smallint;
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO task_counts (status, day, shard, n)
        SELECT coalesce(completion_status, ''), (created AT TIME ZONE 'UTC')::date, s, count(*)
        FROM new_rows WHERE deleted_at IS NULL
        GROUP BY 1, 2 ORDER BY 1, 2
        ON CONFLICT (status, day, shard) DO UPDATE SET n = task_counts.n + excluded.n;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO task_counts (status, day, shard, n)
        SELECT status, day, s, sum(n) FROM (
            SELECT coalesce(completion_status, '') AS status,
                   (created AT TIME ZONE 'UTC')::date AS day, 1 AS n
            FROM new_rows WHERE deleted_at IS NULL
            UNION ALL
            SELECT coalesce(completion_status, ''), (created AT TIME ZONE 'UTC')::date, -1
            FROM old_rows WHERE deleted_at IS NULL
        ) d
        GROUP BY status, day HAVING sum(n) <> 0 ORDER BY status, day
        ON CONFLICT (status, day, shard) DO UPDATE SET n = task_counts.n + excluded.n;
    ELSE
        INSERT INTO task_counts (status, day, shard, n)
        SELECT coalesce(completion_status, ''), (created AT TIME ZONE 'UTC')::date, s, -count(*)
        FROM old_rows WHERE deleted_at IS NULL
        GROUP BY 1, 2 ORDER BY 1, 2
        ON CONFLICT (status, day, shard) DO UPDATE SET n = task_counts.n + excluded.n;
    END IF;
    RETURN NULL;
END
$$;
