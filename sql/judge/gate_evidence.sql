-- The judge gate's evidence from other evaluation sets: their current judgments (linked from predictions) on
-- labelled development utterances, by the same judge model, prompt template and threshold; at most the evidence
-- bound (EMOJUDGE_JUDGE_EVIDENCE_MAX), in a fixed order.
SELECT j.fused_label, j.label, j.accepted, u.emotion
FROM predictions p
JOIN llm_judgments j ON j.custom_id = p.judgment_custom_id
JOIN utterances u ON u.eval_set = p.eval_set AND u.utterance_id = p.utterance_id
WHERE p.eval_set <> ?
  AND u.split = 'development'
  AND u.emotion IS NOT NULL
  AND j.answered
  AND j.judge_model = ?
  AND j.prompt_template_sha256 = ?
  AND j.threshold = ?
ORDER BY p.eval_set, p.utterance_id
LIMIT ?
