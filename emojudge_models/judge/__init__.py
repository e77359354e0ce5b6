"""LLM refinement: prompt, answer schema, acceptance rule and the batch, chat and local judge backends.

Typical use: ``build_requests(inputs, config)`` -> ``ChatJudge(...).judge(requests)`` or
``BatchJudge(ledger, ...).run(requests)`` -> ``result.decide(config.threshold)`` per result; both take
``on_result`` to store each result as it arrives (``ledger.JudgmentWriter.add``).
"""

from emojudge_models.judge.batch import BatchApiError, BatchesStillRunning, BatchJudge, chunk_requests
from emojudge_models.judge.chat import ChatJudge
from emojudge_models.judge.client import API_KEY_ENV, MissingApiKeyError
from emojudge_models.judge.cost import LOCAL_JUDGE_MODEL, estimate_cost
from emojudge_models.judge.ledger import BatchLedger, BatchRecord, InMemoryBatchLedger
from emojudge_models.judge.local_server import JudgeUnavailable, LocalJudgePool, LocalJudgeServer, ensure_local_model
from emojudge_models.judge.prompt import TEMPLATE_SHA256, JudgeInput, prompt_sha256, render_messages
from emojudge_models.judge.requests import (
    BACKENDS,
    DEFAULT_BATCH_MODEL,
    JudgeConfig,
    JudgeRequest,
    build_request,
    build_requests,
    custom_id,
    judgment_key,
    select_for_scope,
)
from emojudge_models.judge.result import MAX_ANSWER_ATTEMPTS, JudgeResult
from emojudge_models.judge.schema import (
    DEFAULT_THRESHOLD,
    JUDGMENT_SCHEMA,
    Decision,
    Judgment,
    ResponseFormat,
    decide,
    parse_judgment,
    response_format,
)

__all__ = [
    "API_KEY_ENV",
    "BACKENDS",
    "DEFAULT_BATCH_MODEL",
    "DEFAULT_THRESHOLD",
    "JUDGMENT_SCHEMA",
    "LOCAL_JUDGE_MODEL",
    "MAX_ANSWER_ATTEMPTS",
    "TEMPLATE_SHA256",
    "BatchApiError",
    "BatchJudge",
    "BatchLedger",
    "BatchRecord",
    "BatchesStillRunning",
    "ChatJudge",
    "Decision",
    "InMemoryBatchLedger",
    "JudgeConfig",
    "JudgeInput",
    "JudgeRequest",
    "JudgeResult",
    "JudgeUnavailable",
    "Judgment",
    "LocalJudgePool",
    "LocalJudgeServer",
    "MissingApiKeyError",
    "ResponseFormat",
    "build_request",
    "build_requests",
    "chunk_requests",
    "custom_id",
    "decide",
    "ensure_local_model",
    "estimate_cost",
    "judgment_key",
    "parse_judgment",
    "prompt_sha256",
    "render_messages",
    "response_format",
    "select_for_scope",
]
