import asyncio

from agents.pool import MAX_CLIENTS, ClientPool


def test_clients_are_sized_to_carry_every_request_in_flight():
    pool = ClientPool(lambda n: n, max_in_flight=32)
    assert len(pool.clients) == 8 and sum(pool.clients) >= 32
    big = ClientPool(lambda n: n, max_in_flight=1000)
    assert len(big.clients) == MAX_CLIENTS and sum(big.clients) >= 1000
    assert ClientPool(lambda n: n, max_in_flight=1).clients == [1]


async def test_the_least_busy_client_is_handed_out():
    pool = ClientPool(lambda n: object(), max_in_flight=12)  # 3 clients
    seen = []
    release = asyncio.Event()

    async def hold():
        async with pool.client() as c:
            seen.append(c)
            await release.wait()

    tasks = [asyncio.create_task(hold()) for _ in range(6)]
    await asyncio.sleep(0)
    assert [seen.count(c) for c in pool.clients] == [2, 2, 2]
    release.set()
    await asyncio.gather(*tasks)
    async with pool.client() as c:
        assert c is pool.clients[0]  # all idle again
