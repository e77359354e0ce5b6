-- v8 -> v9: utterances record their stated language (a manifest's language column, else the set_languages setting),
-- so an utterance in a language other than the ASR's gets no ASR and no text modality (emojudge_models/ingest/
-- language.py). Rows written before keep NULL: the ASR's language, as before.
ALTER TABLE IF EXISTS utterances ADD COLUMN IF NOT EXISTS language VARCHAR;
