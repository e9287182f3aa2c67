"""The names of Mugle's models and ranking methods: the one place they are spelled out.

Every other module (artifacts, ranking, schemas, metrics labels, evaluation) imports them from here,
and the web page reads them from ``GET /health`` (field ``methods``), so adding a model or a method
is a change to this file and to the code that implements it, never to a list somewhere else.
"""

from __future__ import annotations

from typing import Literal, get_args

#: The three embedding models, in the order the manifest, the page and the reports list them.
ModelName = Literal["music2vec", "tcae", "cel"]
#: The ranking methods that fuse the models' candidate lists (see :mod:`app.ranking`).
FusionName = Literal["score_total", "each_top3"]
#: A ranking method of ``/recommend``: a fusion, or one model's own list.
Method = Literal[FusionName, ModelName]
#: The methods of ``/recommend/audio``: an upload has no playlist vector, so only the audio models and
#: their fusion apply.
AudioMethod = Literal["score_total", "tcae", "cel"]

MODEL_NAMES: tuple[str, ...] = get_args(ModelName)
METHODS: tuple[Method, ...] = get_args(Method)
AUDIO_METHODS: tuple[AudioMethod, ...] = get_args(AudioMethod)
#: The method a request gets when it names none.
DEFAULT_METHOD: Method = "score_total"
