from hypothesis import given
from hypothesis import strategies as st

from flanforge.beam_pipelines.hashing import bucket_of, content_hash, normalise, seeded_hash


def test_normalise_folds_case_width_and_whitespace():
    assert normalise("  Hello\tWORLD \n ") == "hello world"
    assert normalise("ＡＢＣ") == "abc"  # full-width letters (NFKC)


def test_content_hash_equal_for_normalised_duplicates_only():
    assert content_hash("Is it  true?", "Yes") == content_hash("is it true?", "yes")
    assert content_hash("Is it true?", "Yes") != content_hash("Is it true?", "No")
    # the separator keeps (inputs, targets) boundaries: moving text across them changes the hash
    assert content_hash("a b", "c") != content_hash("a", "b c")


def test_seeded_hash_depends_on_seed_and_parts():
    assert seeded_hash(1, "a", "b") == seeded_hash(1, "a", "b")
    assert seeded_hash(1, "a", "b") != seeded_hash(2, "a", "b")
    assert seeded_hash(1, "a", "b") != seeded_hash(1, "ab")


@given(st.text(), st.text(), st.integers(min_value=1, max_value=1000))
def test_bucket_in_range(inputs, targets, n):
    assert 0 <= bucket_of(content_hash(inputs, targets), n) < n


@given(st.text())
def test_normalise_collapses_exactly_the_regex_whitespace(text):
    import re
    import unicodedata

    assert normalise(text) == re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text).casefold()).strip()


@given(st.text(alphabet=st.characters(max_codepoint=127)))
def test_the_ascii_fast_path_equals_the_unicode_one(text):
    import unicodedata

    assert normalise(text) == " ".join(unicodedata.normalize("NFKC", text).casefold().split())
