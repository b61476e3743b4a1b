import pytest

from scorer.batching import plan_batches, run_batched, run_halving, take_round


def test_batches_are_longest_first_within_budget_and_cover_everything():
    lengths = [10, 50, 20, 50, 5, 100]
    batches = plan_batches(lengths, max_tokens=100)
    assert batches[0] == [5]  # the longest alone: 100 tokens
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) * max(lengths[i] for i in b) <= 100 or len(b) == 1
        assert [lengths[i] for i in b] == sorted((lengths[i] for i in b), reverse=True)


def test_a_request_over_budget_gets_its_own_batch():
    assert plan_batches([500, 10], max_tokens=100) == [[0], [1]]


def test_results_come_back_in_request_order():
    items = ["aaa", "b", "cc", "dddd"]
    out = run_batched(items, [len(x) for x in items], 8, lambda batch: [x.upper() for x in batch], lambda e: False)
    assert out == ["AAA", "B", "CC", "DDDD"]


class FakeOOM(Exception):
    pass


def test_out_of_memory_halves_the_batch():
    calls = []

    def run(batch):
        calls.append(len(batch))
        if len(batch) > 2:
            raise FakeOOM()
        return [x * 2 for x in batch]

    assert run_halving([1, 2, 3, 4, 5], run, lambda e: isinstance(e, FakeOOM)) == [2, 4, 6, 8, 10]
    assert calls[0] == 5 and max(calls[1:]) <= 3


def test_single_item_oom_and_other_errors_raise():
    def run(batch):
        raise FakeOOM()

    with pytest.raises(FakeOOM):
        run_halving([1], run, lambda e: True)
    with pytest.raises(ValueError):
        run_halving([1, 2], lambda b: (_ for _ in ()).throw(ValueError("x")), lambda e: False)


def test_prefix_groups_put_sharers_together_and_respect_limits():
    from scorer.batching import prefix_groups

    a = [1, 2, 3, 4, 5, 6, 7, 8]
    b = [1, 2, 3, 4, 5, 9, 9]
    c = [7, 7, 7, 7, 7, 7]
    d = [1, 2, 3, 4, 5, 6, 0]
    groups = prefix_groups([a, c, b, d], limits=[7, 5, 6, 4], min_prefix=3)
    shared = dict((tuple(sorted(m)), p) for p, m in groups)
    # d shares 6 tokens with a but needs logits from position 4 on: a and b share 5, so they pair up
    assert shared == {(0, 2): 5, (1,): 0, (3,): 0}
    assert prefix_groups([a, b], limits=[7, 4], min_prefix=3) == [(4, [0, 1])]  # cut to the limit
    assert prefix_groups([a, c], limits=[7, 5], min_prefix=3) == [(0, [0]), (0, [1])]


def test_sharers_of_a_prefix_stay_in_one_batch():
    lengths = [100, 98, 60, 97]
    groups = [0, 1, 0, 1]  # 0 and 2 share a prefix, 1 and 3 another
    assert plan_batches(lengths, max_tokens=200) == [[0, 1], [3, 2]]  # by length alone: sharers split
    assert plan_batches(lengths, max_tokens=200, groups=groups) == [[0, 2], [1, 3]]


def test_a_group_does_not_grow_at_the_cost_of_its_prefix():
    from scorer.batching import prefix_groups

    prompt = list(range(10))
    step0 = [prompt + [50, 51, 52], prompt + [60, 61, 62]]  # share only the prompt (10)
    step1 = [prompt + [70] * 8 + [1, 2], prompt + [70] * 8 + [3, 4]]  # share 18
    seqs = step0 + step1
    groups = prefix_groups(seqs, limits=[100] * 4, min_prefix=5)
    assert sorted((p, sorted(m)) for p, m in groups) == [(10, [0, 1]), (18, [2, 3])]


def test_a_round_takes_the_oldest_requests_that_fit():
    assert take_round([30, 30, 30, 30], budget=100) == 3
    assert take_round([500, 10, 10], budget=100) == 1  # a huge request at the head goes alone...
    assert take_round([10, 500, 10], budget=100) == 1  # ...and one behind it waits for its turn,
    assert take_round([10, 10], budget=100) == 2  # while nothing younger jumps ahead of either
    assert take_round([], budget=100) == 0


def test_a_batch_spanning_prefix_groups_is_costed_by_its_longest_row():
    """Groups keep sharers together, so a batch's first row need not be its longest: the budget
    must hold for rows x the longest row all the same."""
    lengths, groups = [100, 50, 90], [0, 0, 1]
    batches = plan_batches(lengths, max_tokens=150, groups=groups)
    assert sorted(i for b in batches for i in b) == [0, 1, 2]
    for b in batches:
        assert len(b) * max(lengths[i] for i in b) <= 150 or len(b) == 1
