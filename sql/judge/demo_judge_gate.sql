-- How the judge's answers fared in one evaluation set: judged, accepted by the confidence rule, and applied
-- (the judge gate withholds accepted changes that did net harm on development).
SELECT p.judge_gate,
       count(*) AS judged,
       count(*) FILTER (j.accepted) AS accepted_by_rule,
       count(*) FILTER (p.changed) AS applied
FROM predictions p
JOIN llm_judgments j ON j.custom_id = p.judgment_custom_id
WHERE p.eval_set = ?
GROUP BY p.judge_gate
