"""What every synthetic writer shares: English captions from small word lists, random ids and features, and
the file writers (each file goes through :func:`meltr.checkpoint.atomic_write`, so an interrupted run never
leaves a half-written file that a later run would read).

Every function draws from the ``numpy.random.Generator`` it is given, in a fixed order, so a writer's output
is a pure function of its seed.
"""

from __future__ import annotations

import csv
import io
import json
import pickle
import string
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from meltr.checkpoint import atomic_write

__all__ = ["sentence", "transcript", "youtube_id", "random_features", "object_array", "dump_pickle", "write_csv",
           "write_text", "write_json"]

_SUBJECTS = ["a man", "a woman", "the chef", "a girl", "a boy", "the cook", "someone", "a person"]
_COOK_VERBS = ["is slicing", "chops", "stirs", "adds", "mixes", "pours", "fries", "boils", "cuts", "peels",
               "is washing", "seasons"]
_FOODS = ["tomatoes", "the onions", "some garlic", "the chicken", "rice", "the sauce", "fresh basil", "a potato",
          "the noodles", "olive oil", "the eggs", "butter", "carrots", "the dough", "some salt"]
_PLACES = ["in a pan", "into the bowl", "on the board", "with a knife", "in the pot", "for two minutes",
           "until it is brown", "on the table"]
_VTT_VERBS = ["is playing", "is talking about", "is driving", "is singing with", "is watching", "is holding",
              "is cooking", "is showing", "is running with", "is laughing at"]
_VTT_OBJECTS = ["a guitar", "a red car", "the news", "a small dog", "a football", "the crowd", "a video game",
                "a cartoon", "the weather", "a black cat", "some friends", "the camera"]
_FILLERS = ["so", "now", "okay", "and then", "next", "right"]


def sentence(rng: np.random.Generator, kind: str = "cooking") -> str:
    """One English caption from the word lists (``kind``: ``cooking`` or ``video``)."""
    subject = _SUBJECTS[rng.integers(len(_SUBJECTS))]
    if kind == "cooking":
        words = [subject, _COOK_VERBS[rng.integers(len(_COOK_VERBS))], _FOODS[rng.integers(len(_FOODS))]]
    else:
        words = [subject, _VTT_VERBS[rng.integers(len(_VTT_VERBS))], _VTT_OBJECTS[rng.integers(len(_VTT_OBJECTS))]]
    for _ in range(int(rng.integers(0, 3))):  # 0-2 trailing phrases → captions of 3 to ~14 words
        words.append(_PLACES[rng.integers(len(_PLACES))])
    text = " ".join(words)
    return text + "." if rng.random() < 0.3 else text


def transcript(rng: np.random.Generator, kind: str) -> str:
    """An ASR-like run-on text: fillers, lower case, no punctuation, longer than a caption."""
    parts = []
    for _ in range(int(rng.integers(2, 4))):
        parts += [_FILLERS[rng.integers(len(_FILLERS))], sentence(rng, kind).rstrip(".")]
    return " ".join(parts)


def youtube_id(rng: np.random.Generator) -> str:
    alphabet = string.ascii_letters + string.digits + "-_"
    return "".join(alphabet[i] for i in rng.integers(len(alphabet), size=11))


def random_features(rng: np.random.Generator, n_seconds: int, feature_dim: int) -> np.ndarray:
    return rng.standard_normal((n_seconds, feature_dim)).astype(np.float32)


def object_array(items: Sequence[Any]) -> np.ndarray:
    """1-D numpy object array (the official data pickle stores every segment field this way)."""
    arr = np.empty(len(items), dtype=object)
    arr[:] = list(items)
    return arr


def dump_pickle(obj: Any, path: Path) -> None:
    """``pickle.dump`` with protocol 4, the protocol of the measured official pickles (readers load it safely)."""
    atomic_write(path, lambda f: pickle.dump(obj, f, protocol=4))


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A comma-separated file with a header row, ``\\n`` line ends, UTF-8."""
    text = io.StringIO(newline="")
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    write_text(path, text.getvalue())


def write_text(path: Path, text: str) -> None:
    """``text`` as UTF-8."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def write_json(obj: Any, path: Path) -> None:
    """``obj`` as compact json (the official annotation files are one line)."""
    write_text(path, json.dumps(obj))
