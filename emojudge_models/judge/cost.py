"""Estimated judge cost in USD from token counts.

Prices are OpenAI's published list prices in USD per million tokens (input, output) for standard
(synchronous) requests, as of 2025; the Batch API charges half. Check https://openai.com/api/pricing before
quoting a number: this is an estimate for run metadata, not an invoice. Models served locally cost nothing
per token; other models have no known price and get None rather than a made-up figure.
"""

from __future__ import annotations

LOCAL_JUDGE_MODEL = "gemma-3-270m-it-q4_k_m"
"""The model alias the local llama.cpp server is started with."""

LOCAL_MODELS: frozenset[str] = frozenset({LOCAL_JUDGE_MODEL})

PRICES_PER_MILLION: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-2024-11-20": (2.50, 10.00),
    "gpt-4o-2024-08-06": (2.50, 10.00),
    "gpt-4o-2024-05-13": (5.00, 15.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o-mini-2024-07-18": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-2025-04-14": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4-turbo": (10.00, 30.00),
    "gpt-4-turbo-2024-04-09": (10.00, 30.00),
    "gpt-4": (30.00, 60.00),
    "gpt-4-0613": (30.00, 60.00),
}

BATCH_DISCOUNT = 0.5


def estimate_cost(model: str, prompt_tokens: int, completion_tokens: int, batch: bool) -> float | None:
    """USD for the given tokens; 0.0 for local models, None when ``model`` has no known price."""
    if prompt_tokens < 0 or completion_tokens < 0:
        raise ValueError(f"token counts must be non-negative, got {prompt_tokens} and {completion_tokens}")
    if model in LOCAL_MODELS:
        return 0.0
    prices = PRICES_PER_MILLION.get(model)
    if prices is None:
        return None
    input_price, output_price = prices
    cost = (prompt_tokens * input_price + completion_tokens * output_price) / 1_000_000
    return cost * BATCH_DISCOUNT if batch else cost
