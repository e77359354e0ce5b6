-- v10 -> v11: utterances.language is also the language Whisper detected where none was stated (a manifest's language
-- column or set_languages), with the detector's probability in language_probability (NULL for a stated language);
-- see emojudge_models/asr/language_id.py.
ALTER TABLE IF EXISTS utterances ADD COLUMN IF NOT EXISTS language_probability DOUBLE;
