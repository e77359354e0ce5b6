"""The feature store: encoder outputs computed once per (clip content, encoder key), stored, and read back."""
