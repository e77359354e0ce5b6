-- For the feature store's scans over every utterance of a split or set (locations, utterance vectors): a bounded
-- buffer pool, so DuckDB evicts table blocks it has streamed instead of caching the whole vector table (about 1 KB per
-- utterance at 256 floats), and two threads, so the bound does not depend on the machine's cores. A join that
-- outgrows it spills to the database's temporary directory.
SET threads = 2;
SET memory_limit = '64MB';
