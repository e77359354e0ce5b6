-- Back to the session defaults after a bounded scan (features/bounded_scan.sql).
RESET threads;
RESET memory_limit;
