MERGE INTO encoders AS t
USING (SELECT ?::VARCHAR AS encoder_key, ?::VARCHAR AS modality, ?::VARCHAR AS kind, ?::VARCHAR AS spec_json,
              ?::DOUBLE AS frame_rate_hz, ?::INTEGER AS dim) AS s
ON t.encoder_key = s.encoder_key
WHEN NOT MATCHED THEN INSERT (encoder_key, modality, kind, spec_json, frame_rate_hz, dim)
    VALUES (s.encoder_key, s.modality, s.kind, s.spec_json, s.frame_rate_hz, s.dim)
