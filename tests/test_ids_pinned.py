"""Dataset ids of a few small builds, pinned before the one-build-engine refactor.

The id is the hash of the manifest (every file's sha256, the spec, the seed, the split), so an
unchanged id means unchanged bytes, lineage and recipe. If one of these changes, a change to the
code changed what an existing command produces: that needs a new GENERATOR_VERSION / spec field,
not a new pinned value.

Changed on purpose once, in xaug 0.1.1: `min_area` dropped whole small bones, not only the slivers
clipping cuts off (at this fixture's 128 px some carpals are under 16 px^2 and vanished from rotated
and mosaic copies while their pixels stayed). The rotate, rotate_wrist, mosaic and combined ids
below are those of the fix. The version bump changes every plan key (which the manifest records, so
every derived id), so no store reuses a version built with the bug; the demo's 512 px builds
have the same bytes before and after.
"""
from __future__ import annotations

import pytest

from xaug import pipeline as P
from xaug.store import Store
from xaug.synth.generate import synthesize

PINNED = {
    "synth": "418efb2cfffd3809dadef0b6b31661f0166e33cf443552716ae704a4394ae9d3",
    "synth_swaps": "0c38d41fcd4a1fdaa4240e54cd06bf0a04042861018fcac9219697df60c2fa25",
    "rotate": "96c8c64a5b5808321b753f5bf0d70c429fb2751cd92643d13ba2869bc069d342",
    "rotate_wrist": "ce9e694aa0378aa5f47062ca4dfc4e612fa8e216a90d08e9b0f1688adfc59338",
    "mosaic": "6e56b50d82864cf9b0d29c64d9f51c2c6d15fe160c568d7af321b968debe48ae",
    "combined": "0296b849565208b09266b1b86e98ca4006277cbf10e069798495f084feb7ce5d",
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
