"""The Assembly keeps a stream's text as few objects (``Pieces`` folds every FOLD deltas into one
string) and still gives back exactly what arrived: same text per choice and per kind, the same
truncation at the capture cap, non-text pieces dropped, and the Responses decoder's stores left
addressable piece by piece."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from steer.providers.base import FOLD, Assembly, Pieces

pieces_st = st.lists(st.text(min_size=0, max_size=6), max_size=60)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(pieces_st)
def test_pieces_give_back_the_joined_text_and_hold_few_objects(parts):
    p = Pieces()
    for s in parts:
        p.add(s)
    assert p.text() == "".join(parts)
    # Only the pieces since the last fold are kept one by one.
    assert len(p.recent) == len(parts) % FOLD
    assert len(p.folded) == len(parts) // FOLD


def test_pieces_drop_what_is_not_text_when_folding_and_at_the_end():
    p = Pieces()
    for s in ["a", 7, "b", None, "c", ["x"], "d"]:  # a server put a number or a list where text belongs
        p.add(s)  # type: ignore[arg-type]
    assert p.text() == "abcd"


def test_addressable_pieces_are_never_folded():
    p = Pieces(addressable=True)
    for i in range(3 * FOLD + 1):
        p.add(str(i))
    assert p.folded == [] and p.recent == [str(i) for i in range(3 * FOLD + 1)]
    assert p.text() == "".join(str(i) for i in range(3 * FOLD + 1))


writes_st = st.lists(
    st.tuples(st.sampled_from(["text", "reasoning", "refusal", "tool"]), st.integers(0, 2), st.text(max_size=5)),
    max_size=80,
)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(writes_st, st.integers(0, 120))
def test_assembly_text_is_what_arrived_up_to_the_cap(writes, cap):
    """Against a plain model of the same writes: one list per (kind, choice), the cap counted over every
    kept or refused piece in arrival order, exactly as before folding existed."""
    asm = Assembly(max_chars=cap)
    model: dict = {}
    chars, truncated = 0, False
    for kind, choice, s in writes:
        if kind == "text":
            asm.add_text(choice, s)
        elif kind == "reasoning":
            asm.add_reasoning(choice, s)
        elif kind == "refusal":
            asm.add_refusal(choice, s)
        else:
            asm.tool_fragment(choice, 0, "call_1", "f", s)
        if not s:
            continue
        chars += len(s)
        if chars <= cap:
            model.setdefault((kind, choice), []).append(s)
        else:
            truncated = True
    joined = {key: "".join(v) for key, v in model.items()}
    for choice in range(3):
        assert asm.joined_text(choice) == joined.get(("text", choice), "")
    assert asm.all_text() == "".join(joined.get(("text", c), "") for c in range(3))
    assert asm.joined_reasoning() == "".join(joined.get(("reasoning", c), "") for c in range(3))
    assert {c: p.text() for c, p in asm.refusal.items()} == {c: v for (kind, c), v in joined.items() if kind == "refusal"}
    tools = {choice: args for choice, _id, _name, _whole, args in asm.raw_tool_calls()}
    for choice in tools:
        assert tools[choice] == joined.get(("tool", choice), "")
    assert asm.truncated == truncated


def test_tool_snapshot_compares_against_folded_fragments():
    asm = Assembly()
    fragments = ['{"ci', 'ty": ', '"Par', 'is", ', '"unit', 's": "c"}']
    for f in fragments:
        asm.tool_fragment(0, 0, "call_1", "weather", f)
    assert asm.set_tool_arguments(0, 0, "".join(fragments)) is True  # the re-sent whole: one copy kept
    assert asm.duplicates_dropped == 1
    assert asm.set_tool_arguments(0, 0, '{"city": "Rome"}') is False  # fragments went missing: the snapshot wins
    assert asm.raw_tool_calls() == [(0, "call_1", "weather", None, '{"city": "Rome"}')]



def test_choices_are_ordered_numbers_first_whatever_a_malformed_chunk_put_in_the_index():
    asm = Assembly()
    for choice, text in ((1, "b"), ("x", "z"), (0, "a"), (2.5, "y"), (10, "c")):
        asm.add_text(choice, text)
        asm.add_reasoning(choice, text.upper())
        asm.set_finish(choice, "stop")
    assert asm.all_text() == "abc" + "zy"  # 0, 1, 10, then the others by their repr ("'x'" < "2.5")
    assert asm.joined_reasoning() == "ABCZY"
    assert asm.finish_reasons() == ["stop"] * 5
