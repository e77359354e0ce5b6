-- Judge responses beyond one per judgment (an over-count: an invalid answer asked again counts too).
SELECT coalesce(sum(greatest(attempts - 1, 0)), 0) FROM llm_judgments
