-- What the judge cost one evaluation set over all its runs (the sum of its v_judge_spend rows).
SELECT coalesce(sum(calls), 0) AS calls,
       coalesce(sum(prompt_tokens), 0) AS prompt_tokens,
       coalesce(sum(completion_tokens), 0) AS completion_tokens,
       CASE WHEN coalesce(bool_and(estimated_cost_usd IS NOT NULL), true) THEN coalesce(sum(estimated_cost_usd), 0) END AS estimated_cost_usd
FROM v_judge_spend
WHERE eval_set = ?
