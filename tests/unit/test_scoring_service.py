"""The scorer's queue and model thread, with a fake model: rounds, order and failures."""

import pytest

from scorer.encoded import Encoded
from scorer.protocol import ScoreItem
from scorer.service import ROUND_BATCHES, ScoringService


class FakeModel:
    """Length from the thinking field ("120" -> a 120-token request); score = its length."""

    def __init__(self):
        self.batches: list[list[int]] = []

    def encode(self, question, thinking, answer, lang):
        n = int(thinking)
        return Encoded(list(range(n)), [n - 1])

    def groups(self, encs):
        return None

    def score(self, batch):
        lengths = [len(e) for e in batch]
        self.batches.append(lengths)
        if 13 in lengths:
            raise RuntimeError("poisoned batch")
        return [float(n) for n in lengths]


def service(max_batch_tokens=100):
    s = ScoringService(max_batch_tokens)
    s.model = FakeModel()
    return s


def submit(s, n):
    return s.submit([ScoreItem(question="q", thinking=str(n), answer="a")])[0]


def test_rounds_serve_the_oldest_requests_first_and_a_huge_one_alone():
    s = service()
    budget = ROUND_BATCHES * 100
    first = [submit(s, 50) for _ in range(3)]
    huge = submit(s, 5 * budget)
    later = [submit(s, 100) for _ in range(6)]
    rounds = []
    while any(not f.done() for f in [*first, huge, *later]):
        jobs = s.next_round()
        rounds.append([len(e) for job in jobs for e in job.encs])
        s.serve_round(jobs)
    assert rounds == [[50, 50, 50], [5 * budget], [100] * 4, [100] * 2]
    assert [f.result() for f in later] == [100.0] * 6 and huge.result() == 5 * budget
    assert s.rounds == 4 and s.scored == 10


def test_within_a_round_batches_are_longest_first():
    s = service()
    futures = [submit(s, n) for n in (10, 90, 40, 60)]
    s.serve_round(s.next_round())
    assert s.model.batches == [[90], [60], [40, 10]]
    assert [f.result() for f in futures] == [10.0, 90.0, 40.0, 60.0]


def test_a_failing_batch_fails_only_its_own_callers():
    s = service()
    ok = submit(s, 90)
    bad = submit(s, 13)
    s.serve_round(s.next_round())
    assert ok.result() == 90.0
    with pytest.raises(RuntimeError, match="poisoned"):
        bad.result()
