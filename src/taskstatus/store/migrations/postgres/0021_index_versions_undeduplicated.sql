-- No deduplication in the indexes of `tasks` whose key is one task's (issue 17). A finish
-- is not a heap-only update (completion_status and completed are index keys), so every
-- index gets a second entry for the task, the same key for the new row version; when a leaf
-- page is full, B-tree deduplication merges such entries into posting lists (and the
-- bottom-up deletion pass that runs first, to remove the entries of dead versions, then
-- works through those lists). These keys end with the task's id, so the only duplicates
-- they ever hold are versions of one task, which bottom-up deletion and VACUUM remove
-- anyway: merging them buys little space for a short time. Measured (callgrind,
-- bench/pg_finish_cost.py): the index entries were half of a finish statement's backend
-- instructions; without deduplication a finish of 8 tasks costs 3.4 M instructions instead
-- of 4.7 M (27 % fewer), of 32 tasks 9.6 M instead of 13.7 M; page splits barely change
-- (bottom-up deletion still frees the pages). tasks_completed (the finish time, which a
-- statement's tasks share) and tasks_parent (many children, one parent) hold real
-- duplicates and keep it. A setting of the index, for the entries written from now on:
-- no rebuild, and the lock it takes lets reads and writes go on.
ALTER INDEX tasks_pkey SET (deduplicate_items = off);
ALTER INDEX tasks_status_created SET (deduplicate_items = off);
ALTER INDEX tasks_type_created SET (deduplicate_items = off);
ALTER INDEX tasks_target_created SET (deduplicate_items = off);
ALTER INDEX tasks_launcher_created SET (deduplicate_items = off);
ALTER INDEX tasks_handler_created SET (deduplicate_items = off);
ALTER INDEX tasks_created SET (deduplicate_items = off);
