"""Turn model outputs into ``logits`` rows: raw outputs, class probabilities and the predicted label."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import softmax

from emojudge_models.labels import EMOTIONS


def logits_rows(utterance_ids: list[str], outputs: np.ndarray, task: str) -> pd.DataFrame:
    """One row per utterance; categorical rows get softmax probabilities and the argmax label in EMOTIONS order."""
    outputs = np.asarray(outputs, dtype=np.float32)
    frame = pd.DataFrame({"utterance_id": utterance_ids, "task": task, "logits": list(outputs)})
    if task == "categorical":
        probabilities = softmax(outputs.astype(np.float64), axis=1)
        frame["probabilities"] = list(probabilities.astype(np.float32))
        frame["predicted_label"] = [EMOTIONS[i] for i in probabilities.argmax(axis=1)]
    else:
        frame["predicted_attributes"] = list(outputs)
    return frame
