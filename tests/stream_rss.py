"""Head training streamed from a synthetic feature store, run as its own process by tests/test_streaming.py.

``python stream_rss.py <home>`` reads the train and development splits of the store that
``emojudge_models.features.synthetic`` built under ``home``, trains a linear probe for one epoch on the first
2,000 train utterances (so every code path has run and its pages are resident), notes the resident memory and resets
the peak (``/proc/self/clear_refs``), then trains one epoch on the whole split, streamed shard by shard with speaker
normalisation on the fly (what the training asset does). Prints JSON: the resident memory before the full run, the
peak during it, and the train frames' size, in MB.
"""

import json
import sys
from pathlib import Path

from emojudge_models.features.datasets import SplitData, frame_stream, labelled_rows, speaker_normaliser
from emojudge_models.features.synthetic import ENCODER_KEY, EVAL_SET, synthetic_store
from emojudge_models.models.loop import TrainConfig
from emojudge_models.models.policy import audio_head_config
from emojudge_models.models.training import train_audio_head

WARM_UP = 2000


def status_mb(field: str) -> float:
    """``VmRSS`` (resident now) or ``VmHWM`` (peak resident since start or the last reset) in MB."""
    status = Path("/proc/self/status").read_text()
    return int(status.split(f"{field}:")[1].split()[0]) / 1024


def main() -> None:
    store = synthetic_store(Path(sys.argv[1]))
    with store.connect() as con:
        train, dev = (labelled_rows(con, [EVAL_SET], s, ENCODER_KEY, "categorical") for s in ("train", "development"))
    normaliser = speaker_normaliser(store, [EVAL_SET], ENCODER_KEY)
    small = SplitData(train.rows.iloc[:WARM_UP], train.targets[:WARM_UP])
    streams = [frame_stream(store, split, ENCODER_KEY, normaliser, 512, 0) for split in (small, train, dev)]
    frames_mb = float(streams[1].lengths.sum() * streams[1].dim * 2) / 2**20
    config = audio_head_config("probe", "categorical", streams[1].dim, TrainConfig(max_epochs=1, batch_size=128))
    train_audio_head(streams[0], streams[2], config, "cpu", seed=0)
    baseline = status_mb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident size
    result = train_audio_head(streams[1], streams[2], config, "cpu", seed=0)
    peak = status_mb("VmHWM")
    print(json.dumps({"baseline_mb": baseline, "peak_mb": peak, "frames_mb": frames_mb, "dev": result.dev_metric}))


if __name__ == "__main__":
    main()
