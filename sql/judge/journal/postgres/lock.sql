-- Serialise read-then-claim sessions of every host (held until the transaction ends), as SQLite's BEGIN IMMEDIATE.
SELECT pg_advisory_xact_lock(hashtext('emojudge judge journal'))
