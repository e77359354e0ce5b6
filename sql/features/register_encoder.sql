INSERT INTO encoders (encoder_key, modality, kind, spec_json, frame_rate_hz, dim)
VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING
