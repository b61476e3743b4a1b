from scorer.prefix_cache import PrefixCache


def test_lookup_finds_the_longest_stored_prefix():
    c = PrefixCache(max_bytes=100)
    c.put([1, 2], "a", 10)
    c.put([7, 8, 9], "b", 10)
    assert c.lookup([1, 2, 3, 4]) == (2, "a")
    assert c.lookup([7, 8]) == (0, None)  # a stored key longer than the tokens is no prefix of them
    assert c.lookup([1, 3]) == (0, None)
    assert (c.stats.hits, c.stats.misses, c.stats.tokens_reused) == (1, 2, 2)
    assert c.longest([7, 8, 9, 10]) == 3 and c.stats.hits == 1  # peeking records no use


def test_a_longer_prefix_of_the_same_record_supersedes_the_shorter():
    c = PrefixCache(max_bytes=100)
    c.put([1, 2], "step0", 10)
    c.put([5, 6], "other record", 10)
    c.put([1, 2, 3], "step1", 15)
    assert len(c) == 2 and c.bytes == 25
    assert c.lookup([1, 2, 3, 4]) == (3, "step1")
    assert c.lookup([1, 2, 9]) == (0, None)


def test_least_recently_used_entries_go_first_when_over_budget():
    c = PrefixCache(max_bytes=30)
    c.put([1], "a", 10)
    c.put([2], "b", 10)
    c.put([3], "c", 10)
    c.lookup([1, 0])  # a is used again: b is now the oldest
    c.put([4], "d", 10)
    assert c.longest([2]) == 0 and c.longest([1]) == c.longest([3]) == c.longest([4]) == 1
    assert c.bytes == 30 and c.stats.evictions == 1


def test_an_entry_over_the_whole_budget_is_not_stored():
    c = PrefixCache(max_bytes=30)
    c.put([1], "a", 10)
    assert not c.put([2], "huge", 31)
    assert len(c) == 1 and c.bytes == 10
