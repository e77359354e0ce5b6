-- Where the audio and text models disagree, and which one the fusion (and the judge) sided with.
SELECT eval_set, utterance_id, true_label, audio_label, text_label, fused_label, final_label,
       CASE WHEN fused_label = audio_label THEN 'audio'
            WHEN fused_label = text_label THEN 'text' ELSE 'neither' END AS fusion_sided_with,
       transcript
FROM v_predictions
WHERE audio_label IS NOT NULL AND text_label IS NOT NULL AND audio_label <> text_label
ORDER BY eval_set, utterance_id;
