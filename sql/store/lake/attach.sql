-- Attach the DuckLake warehouse: its catalog in PostgreSQL, its data as Parquet under the shared root.
-- Formatted by store/lake.py (ATTACH takes no bound parameters): {catalog}, {data_path}, {options}.
ATTACH 'ducklake:postgres:{catalog}' AS lake (DATA_PATH '{data_path}'{options})
