-- Audio paths of the train split of the given evaluation sets (for the waveform statistics).
SELECT audio_path FROM utterances WHERE list_contains(?, eval_set) AND split = 'train' ORDER BY eval_set, utterance_id
