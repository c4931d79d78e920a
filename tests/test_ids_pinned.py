"""Dataset ids of a few small builds, pinned before the one-build-engine refactor.

The id is the hash of the manifest (every file's sha256, the spec, the seed, the split), so an
unchanged id means unchanged bytes, lineage and recipe. If one of these changes, a change to the
code changed what an existing command produces: that needs a new GENERATOR_VERSION / spec field,
not a new pinned value.
"""
from __future__ import annotations

import pytest

from xaug import pipeline as P
from xaug.store import Store
from xaug.synth.generate import synthesize

PINNED = {
    "synth": "418efb2cfffd3809dadef0b6b31661f0166e33cf443552716ae704a4394ae9d3",
    "synth_swaps": "0c38d41fcd4a1fdaa4240e54cd06bf0a04042861018fcac9219697df60c2fa25",
    "rotate": "f94762639bb800e5abf1f1f7c85541818687b1d3c9d5158582a2dd02fe7bc74b",
    "rotate_wrist": "b9f9f8028974bbac8dd1be399cf9738184a9a4e5c7ed894142a05412c5b642df",
    "mosaic": "58f2e974567a7efa08f24f2c28d252150f5c985988570aa2561c0605cd2b27d0",
    "combined": "42b08651732bf8005be9462ae1ff9e4bb8f47f8fe63f0b058c8845b38805e1e5",
}

PIPELINES = {
    "rotate": {"name": "rotate", "seed": 1, "steps": [{"op": "rotate", "angle_range": [-30, 30]}]},
    "rotate_wrist": {"name": "wrist", "seed": 2, "steps": [{"op": "rotate", "pivot": "wrist"}]},
    "mosaic": {"name": "mosaic", "seed": 0, "steps": [{"op": "mosaic", "grid": "2x2", "n": 5}]},
    "combined": {"name": "comb", "seed": 0, "include_source": True,
                 "steps": [{"op": "rotate"}, {"op": "flip"}, {"op": "mosaic", "n": 3}]},
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("pinned"))
    # the legacy appearance: the look these ids were pinned with (the default is now realistic)
    ids = {"synth": synthesize(store, "raw", persons=4, test_persons=1, size=128, seed=3,
                               progress=False, jobs=1, appearance="legacy").id,
           "synth_swaps": synthesize(store, "swaps", persons=4, test_persons=1, size=128, seed=1,
                                     label_swaps=1, progress=False, jobs=2, appearance="legacy").id}
    for key, doc in PIPELINES.items():
        ids[key] = P.run_pipeline(store, P.parse_pipeline(doc), jobs=2, progress=False).dataset.id
    return ids


@pytest.mark.parametrize("key", sorted(PINNED))
def test_build_id_is_pinned(built, key):
    assert built[key] == PINNED[key]
