-- Recurring voices across inbox episodes (hosts, regular guests): for each speaker, the most similar speaker of every
-- other episode by the cosine similarity of their voice centroids (mean Resemblyzer vectors), most similar first.
SELECT
    a.eval_set,
    a.speaker_id,
    b.eval_set AS other_episode,
    b.speaker_id AS closest_voice,
    round(list_cosine_similarity(a.centroid, b.centroid), 3) AS similarity,
    round(a.speech_s, 1) AS speech_s,
    round(b.speech_s, 1) AS other_speech_s
FROM speakers a
JOIN speakers b ON a.eval_set <> b.eval_set
QUALIFY row_number() OVER (
    PARTITION BY a.speaker_id, b.eval_set ORDER BY list_cosine_similarity(a.centroid, b.centroid) DESC
) = 1
ORDER BY similarity DESC, a.speaker_id
