-- Reserved: the event-log branch of issue 17 brings its own 0009; this placeholder only keeps
-- the numbers 1..n (sqlfiles.load_migrations) until it is merged, and goes then.
SELECT 1;
