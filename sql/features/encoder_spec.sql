-- The spec an encoder key was computed from (JSON), or no row for an unknown key.
SELECT spec_json FROM encoders WHERE encoder_key = ?
