"""The approximate tokenizer and the simulated model's answers."""

from __future__ import annotations

from jitagent.client.text import count_tokens, simulated_answer


def test_count_tokens_is_four_bytes_per_token_rounded_up() -> None:
    assert count_tokens("") == 0
    assert count_tokens("abcd") == 1
    assert count_tokens("abcde") == 2
    assert count_tokens("é" * 4) == 2   # bytes, not characters


def test_answers_are_deterministic_and_capped() -> None:
    a = simulated_answer(b"prompt", None, 10_000)
    assert a == simulated_answer(b"prompt", None, 10_000)
    assert simulated_answer(b"prompt", 1, 50) != simulated_answer(b"prompt", 2, 50)
    capped = simulated_answer(b"prompt", None, 3)
    assert capped.length == a.length and capped.pieces == a.pieces[:3]
    assert len(a.pieces) == a.length >= 1
    assert a.pieces[0] == a.pieces[0].strip() and all(p.startswith(" ") for p in a.pieces[1:])
    assert simulated_answer(b"", -7, 5).length >= 1   # any integer seed
    lengths = sorted(simulated_answer(b"", s, 10**6).length for s in range(500))
    assert 120 < lengths[250] < 320   # median about 200
