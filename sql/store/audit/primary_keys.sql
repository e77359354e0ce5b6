-- Each table's primary key columns, read from a database holding the file warehouse's schema (the lake has none).
SELECT table_name, constraint_column_names FROM duckdb_constraints() WHERE constraint_type = 'PRIMARY KEY'
ORDER BY table_name
