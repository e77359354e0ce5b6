-- The readers' snapshot rebuilt from the main file without opening it for writing (store/warehouse.py,
-- rebuild_snapshot), in an in-memory connection. Formatted (ATTACH takes no bound parameters): {source}, {target}.
ATTACH '{source}' AS main_file (READ_ONLY);
ATTACH '{target}' AS rebuilt;
COPY FROM DATABASE main_file TO rebuilt;
DETACH rebuilt;
DETACH main_file;
