"""MST lookup: interop vectors, builder cross-checks, inclusion/absence proofs, hostile trees."""

from __future__ import annotations

import contextlib
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atcr_verify.errors import LimitExceeded, MstError, VerifyError
from atcr_verify.repo import dagcbor
from atcr_verify.repo.cid import RAW, Cid
from atcr_verify.repo.mst import MstLimits, common_prefix_len, find, key_height
from tests.support import vector_params
from tests.support.mst_builder import build_mst, node_value, put, search_path

LEAF = Cid.for_block(dagcbor.encode({"leaf": True}))
OTHER = Cid.for_block(dagcbor.encode({"other": True}))


def key_at(height: int, tag: str = "k", skip: int = 0) -> str:
    """A deterministic ``com.example.record/...`` key of the given MST height."""
    found = 0
    for index in range(1_000_000):
        key = f"com.example.record/{tag}{index}"
        if key_height(key) == height:
            if found == skip:
                return key
            found += 1
    raise AssertionError("no key found")


def keys_at(height: int, count: int, tag: str = "k") -> list[str]:
    return sorted(key_at(height, tag, skip) for skip in range(count))


# --- interop vectors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case", vector_params("mst/key_heights.json", ids=lambda i, c: c["key"] or "empty")
)
def test_key_heights(case: dict[str, Any]) -> None:
    assert key_height(case["key"].encode()) == case["height"]
    assert key_height(case["key"]) == case["height"]


@pytest.mark.parametrize("key", vector_params("mst/example_keys.txt", lines=True))
def test_example_keys(key: str) -> None:
    # gen_keys.py names each key <letter><height>/<number>.
    assert key_height(key.encode()) == int(key[1])


@pytest.mark.parametrize(
    "case",
    vector_params("mst/common_prefix.json", ids=lambda i, c: f"{c['left']!r}-{c['right']!r}"),
)
def test_common_prefix(case: dict[str, Any]) -> None:
    assert common_prefix_len(case["left"].encode(), case["right"].encode()) == case["len"]


@pytest.mark.parametrize(
    "case",
    vector_params("firehose/commit-proof-fixtures.json", ids=lambda i, c: c["comment"]),
)
def test_commit_proof_fixture(case: dict[str, Any]) -> None:
    leaf = Cid.parse(case["leafValue"])
    before = build_mst(dict.fromkeys(case["keys"], leaf))
    after_keys = (set(case["keys"]) | set(case["adds"])) - set(case["dels"])
    after = build_mst(dict.fromkeys(after_keys, leaf))
    # The builder reproduces the reference implementation's trees byte for byte.
    assert str(before.root) == case["rootBeforeCommit"]
    assert str(after.root) == case["rootAfterCommit"]
    proof_cids = {Cid.parse(text) for text in case["blocksInProof"]}
    assert proof_cids <= set(after.blocks)
    proof = {cid: after.blocks[cid] for cid in proof_cids}
    for key in case["adds"] + case["dels"]:
        assert set(search_path(after, key)) <= proof_cids
    # The fixture's proof blocks alone prove every add (inclusion) and delete (absence).
    for key in case["adds"]:
        assert find(proof, after.root, key) == leaf
    for key in case["dels"]:
        assert find(proof, after.root, key) is None
    for key in after_keys:
        assert find(after.blocks, after.root, key) == leaf
    for key in case["keys"]:
        assert find(before.blocks, before.root, key) == leaf


# --- lookups on built trees -----------------------------------------------------------------


def random_keys(rng: random.Random, count: int) -> list[str]:
    collections = ["io.atcr.manifest", "io.atcr.tag", "app.bsky.feed.post"]
    return [
        f"{rng.choice(collections)}/{''.join(rng.choice('abcdefghij234567') for _ in range(13))}"
        for _ in range(count)
    ]


def test_every_key_found_with_only_its_path() -> None:
    rng = random.Random(7)
    keys = random_keys(rng, 400)
    values = {key: Cid.for_block(key.encode()) for key in keys}
    tree = build_mst(values)
    heights = {key_height(key) for key in keys}
    assert max(heights) >= 3  # a multi-level tree
    for key in keys:
        path = search_path(tree, key)
        proof = {cid: tree.blocks[cid] for cid in path}
        assert find(proof, tree.root, key) == values[key]
    for key in random_keys(rng, 200):
        if key in values:
            continue
        proof = {cid: tree.blocks[cid] for cid in search_path(tree, key)}
        assert find(proof, tree.root, key) is None


def test_empty_tree_proves_absence() -> None:
    tree = build_mst({})
    assert find(tree.blocks, tree.root, "io.atcr.tag/latest") is None


def test_single_key_tree() -> None:
    tree = build_mst({"io.atcr.tag/latest": LEAF})
    assert find(tree.blocks, tree.root, "io.atcr.tag/latest") == LEAF
    assert find(tree.blocks, tree.root, "io.atcr.tag/older") is None
    assert find(tree.blocks, tree.root, "a.b.c/z") is None


def test_empty_intermediate_nodes_are_walked() -> None:
    # Keys at heights 2 and 0 only: the level-1 nodes between them have no entries.
    top = key_at(2, "t")
    low = keys_at(0, 3, "b")
    tree = build_mst({top: LEAF, **dict.fromkeys(low, OTHER)})
    nodes = [tree.node(cid) for cid in tree.blocks]
    assert any(not node["e"] and node["l"] is not None for node in nodes)
    for key in low:
        assert find(tree.blocks, tree.root, key) == OTHER
    assert find(tree.blocks, tree.root, top) == LEAF


def test_missing_node_is_incomplete_not_absent() -> None:
    keys = [*keys_at(0, 4, "a"), key_at(1, "m")]
    tree = build_mst(dict.fromkeys(keys, LEAF))
    target = keys[0]
    path = search_path(tree, target)
    assert len(path) == 2
    proof = {path[0]: tree.blocks[path[0]]}
    with pytest.raises(MstError, match="proof incomplete"):
        find(proof, tree.root, target)
    with pytest.raises(MstError, match="proof incomplete"):
        find({}, tree.root, target)


# --- hostile trees --------------------------------------------------------------------------


def single(
    entries: list[tuple[str, Cid, Cid | None]], left: Cid | None = None
) -> tuple[dict[Cid, bytes], Cid]:
    blocks: dict[Cid, bytes] = {}
    root = put(blocks, node_value(left, [(k.encode(), v, t) for k, v, t in entries]))
    return blocks, root


def test_out_of_order_keys() -> None:
    a, b = keys_at(0, 2)
    blocks, root = single([(b, LEAF, None), (a, LEAF, None)])
    with pytest.raises(MstError, match="ascending"):
        find(blocks, root, a)


def test_duplicate_keys() -> None:
    a = key_at(0)
    blocks, root = single([(a, LEAF, None), (a, OTHER, None)])
    with pytest.raises(MstError, match="ascending"):
        find(blocks, root, a)


def test_mixed_heights_in_one_node() -> None:
    low, high = key_at(0, "a"), key_at(1, "b")
    blocks, root = single(sorted([(low, LEAF, None), (high, LEAF, None)]))
    with pytest.raises(MstError, match="different heights"):
        find(blocks, root, low)


def test_child_at_wrong_height() -> None:
    blocks: dict[Cid, bytes] = {}
    grandchild_key = key_at(0, "a")
    parent_key = key_at(2, "z")
    assert grandchild_key < parent_key
    child = put(blocks, node_value(None, [(grandchild_key.encode(), LEAF, None)]))
    # A height-2 node linking straight to a height-0 node skips level 1.
    root = put(blocks, node_value(child, [(parent_key.encode(), LEAF, None)]))
    with pytest.raises(MstError, match="expected 1"):
        find(blocks, root, grandchild_key)
    # The other direction: a child as high as its parent.
    sibling = key_at(2, "a")
    assert sibling < parent_key
    high_child = put(blocks, node_value(None, [(sibling.encode(), LEAF, None)]))
    root = put(blocks, node_value(high_child, [(parent_key.encode(), LEAF, None)]))
    with pytest.raises(MstError, match="expected 1"):
        find(blocks, root, sibling)


def test_height_zero_node_with_subtree() -> None:
    blocks: dict[Cid, bytes] = {}
    first, second = keys_at(0, 2)
    child = put(blocks, node_value(None, [(second.encode(), LEAF, None)]))
    root = put(blocks, node_value(None, [(first.encode(), LEAF, child)]))
    with pytest.raises(MstError, match="height 0 has subtrees"):
        find(blocks, root, first)
    root = put(blocks, node_value(child, [(first.encode(), LEAF, None)]))
    with pytest.raises(MstError, match="height 0 has subtrees"):
        find(blocks, root, first)


def test_child_keys_outside_parent_range() -> None:
    blocks: dict[Cid, bytes] = {}
    parent_key = key_at(1, "m")
    beyond = next(k for k in keys_at(0, 40, "z") if k > parent_key)
    before = next(k for k in keys_at(0, 40, "a") if k < parent_key)
    # Left subtree holding a key greater than the entry after it.
    child = put(blocks, node_value(None, [(beyond.encode(), LEAF, None)]))
    root = put(blocks, node_value(child, [(parent_key.encode(), LEAF, None)]))
    with pytest.raises(MstError, match="outside"):
        find(blocks, root, before)
    # Right subtree holding a key smaller than the entry before it.
    child = put(blocks, node_value(None, [(before.encode(), LEAF, None)]))
    root = put(blocks, node_value(None, [(parent_key.encode(), LEAF, child)]))
    with pytest.raises(MstError, match="outside"):
        find(blocks, root, beyond)


@pytest.mark.parametrize(
    "key",
    [
        b"no-slash",
        b"/rkey",
        b"collection/",
        b"a/b/c",
        b"a/b c",
        b"a/\xc3\xa9",
        b"a/b\x00",
        b"a/" + b"x" * 1030,
    ],
)
def test_invalid_keys_in_nodes(key: bytes) -> None:
    blocks: dict[Cid, bytes] = {}
    root = put(blocks, {"e": [{"k": key, "p": 0, "t": None, "v": LEAF}], "l": None})
    with pytest.raises(MstError, match="invalid key"):
        find(blocks, root, "a/b")


def test_non_maximal_prefix_compression() -> None:
    a, b = keys_at(0, 2)
    assert common_prefix_len(a.encode(), b.encode()) > 0
    entries = [
        {"k": a.encode(), "p": 0, "t": None, "v": LEAF},
        {"k": b.encode(), "p": 0, "t": None, "v": LEAF},
    ]
    blocks: dict[Cid, bytes] = {}
    root = put(blocks, {"e": entries, "l": None})
    with pytest.raises(MstError, match="not maximal"):
        find(blocks, root, a)


def _entry(**overrides: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"k": key_at(0).encode(), "p": 0, "t": None, "v": LEAF}
    entry.update(overrides)
    return {key: value for key, value in entry.items() if value is not ...}


@pytest.mark.parametrize(
    "node",
    [
        pytest.param({"e": [], "l": None, "x": None}, id="extra-node-field"),
        pytest.param({"e": []}, id="missing-l"),
        pytest.param({"l": None}, id="missing-e"),
        pytest.param({"e": {}, "l": None}, id="e-not-list"),
        pytest.param({"e": [], "l": b"x"}, id="l-bytes"),
        pytest.param({"e": [], "l": 0}, id="l-int"),
        pytest.param({"e": [], "l": Cid.for_block(b"x", RAW)}, id="l-raw-codec"),
        pytest.param({"e": [1], "l": None}, id="entry-not-map"),
        pytest.param({"e": [_entry(x=1)], "l": None}, id="extra-entry-field"),
        pytest.param({"e": [_entry(t=...)], "l": None}, id="missing-t"),
        pytest.param({"e": [_entry(v=...)], "l": None}, id="missing-v"),
        pytest.param({"e": [_entry(k="text")], "l": None}, id="k-text"),
        pytest.param({"e": [_entry(p=-1)], "l": None}, id="p-negative"),
        pytest.param({"e": [_entry(p=1)], "l": None}, id="p-beyond-previous"),
        pytest.param({"e": [_entry(p=False)], "l": None}, id="p-bool"),
        pytest.param({"e": [_entry(v=None)], "l": None}, id="v-null"),
        pytest.param({"e": [_entry(v=b"x")], "l": None}, id="v-bytes"),
        pytest.param({"e": [_entry(t=b"x")], "l": None}, id="t-bytes"),
        pytest.param({"e": [_entry(t=Cid.for_block(b"x", RAW))], "l": None}, id="t-raw-codec"),
        pytest.param([], id="node-is-list"),
        pytest.param("node", id="node-is-text"),
    ],
)
def test_malformed_nodes(node: Any) -> None:
    blocks: dict[Cid, bytes] = {}
    root = put(blocks, node)
    with pytest.raises(MstError):
        find(blocks, root, key_at(0))


def test_non_canonical_node_bytes() -> None:
    data = b"\xa2\x61l\xf6\x61e\x80"  # keys out of order
    root = Cid.for_block(data)
    with pytest.raises(MstError, match="DAG-CBOR"):
        find({root: data}, root, "a/b")


def test_root_link_must_be_dag_cbor() -> None:
    data = dagcbor.encode({"e": [], "l": None})
    root = Cid.for_block(data, RAW)
    with pytest.raises(MstError, match="dag-cbor"):
        find({root: data}, root, "a/b")


def test_root_empty_node_with_subtree() -> None:
    tree = build_mst({key_at(0): LEAF})
    blocks = dict(tree.blocks)
    root = put(blocks, {"e": [], "l": tree.root})
    with pytest.raises(MstError, match="root is an empty node"):
        find(blocks, root, key_at(0))


def test_empty_non_root_node_without_subtree() -> None:
    blocks: dict[Cid, bytes] = {}
    empty = put(blocks, {"e": [], "l": None})
    top = key_at(1, "z")
    probe = next(k for k in keys_at(0, 20, "a") if k < top)
    root = put(blocks, node_value(empty, [(top.encode(), LEAF, None)]))
    with pytest.raises(MstError, match="empty and has no subtree"):
        find(blocks, root, probe)


def test_entry_limit() -> None:
    keys = keys_at(0, 6)
    tree = build_mst(dict.fromkeys(keys, LEAF))
    with pytest.raises(LimitExceeded):
        find(tree.blocks, tree.root, keys[0], MstLimits(max_entries_per_node=5))
    assert find(tree.blocks, tree.root, keys[0], MstLimits(max_entries_per_node=6)) == LEAF


def test_depth_limit() -> None:
    keys = [key_at(3, "d"), key_at(2, "c"), key_at(1, "b"), key_at(0, "a")]
    tree = build_mst(dict.fromkeys(keys, LEAF))
    deepest = keys[-1]
    depth = len(search_path(tree, deepest))
    assert find(tree.blocks, tree.root, deepest, MstLimits(max_depth=depth)) == LEAF
    with pytest.raises(LimitExceeded):
        find(tree.blocks, tree.root, deepest, MstLimits(max_depth=depth - 1))


def test_key_length_limit() -> None:
    key = "a.b.c/" + "x" * 100
    tree = build_mst({key: LEAF})
    assert find(tree.blocks, tree.root, key) == LEAF
    with pytest.raises(MstError):
        find(tree.blocks, tree.root, key, MstLimits(max_key_bytes=50))


@pytest.mark.parametrize("key", ["", "nocollection", "a/b/c", "a/ b", "é/x", "a/" + "x" * 1100])
def test_invalid_lookup_key(key: str) -> None:
    tree = build_mst({})
    with pytest.raises(MstError):
        find(tree.blocks, tree.root, key)


# --- property tests -------------------------------------------------------------------------

rkeys = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_~.:", min_size=1, max_size=12)
mst_keys = st.builds(lambda c, r: f"{c}/{r}", st.sampled_from(["a.b.c", "io.atcr.tag"]), rkeys)


@settings(max_examples=60, deadline=None)
@given(st.sets(mst_keys, max_size=60), st.lists(mst_keys, max_size=10))
def test_built_trees_answer_correctly(keys: set[str], probes: list[str]) -> None:
    values = {key: Cid.for_block(key.encode()) for key in keys}
    tree = build_mst(values)
    for key in list(keys)[:20] + probes:
        proof = {cid: tree.blocks[cid] for cid in search_path(tree, key)}
        assert find(proof, tree.root, key) == values.get(key)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.text(max_size=30))
def test_arbitrary_root_block(data: bytes, key: str) -> None:
    root = Cid.for_block(data)
    with contextlib.suppress(VerifyError):
        find({root: data}, root, key)


node_links = st.none() | st.just(LEAF) | st.just(Cid.for_block(b"x", RAW)) | st.binary(max_size=3)
entries = st.fixed_dictionaries(
    {
        "k": st.binary(max_size=12) | st.text(max_size=3),
        "p": st.integers(-2, 8),
        "t": node_links,
        "v": node_links,
    },
    optional={"x": st.integers(-5, 5)},
)
nodes = st.fixed_dictionaries(
    {"e": st.lists(entries, max_size=4), "l": node_links}, optional={"z": st.none()}
)


@settings(max_examples=300, deadline=None)
@given(nodes, mst_keys)
def test_arbitrary_node_shapes(node: dict[str, Any], key: str) -> None:
    blocks: dict[Cid, bytes] = {}
    root = put(blocks, node)
    with contextlib.suppress(VerifyError):
        find(blocks, root, key)
