#!/usr/bin/env python3
"""Check that the current `redis` Python client connects to a byzscale Redis
gateway with default settings, and with protocol=3, and runs a few commands of
every family (RESP3 maps, sets and doubles included).

    pip install redis
    byzscale cluster --duration 0 --keep --json   # note "redis": "127.0.0.1:PORT"
    python3 bench/redis_py_check.py 127.0.0.1:PORT

Exits non-zero on the first failed check. Not part of CI (it needs pip).
"""
import sys

import redis


def check(r, label):
    r.flushdb()
    assert r.ping() is True
    assert r.set("greeting", "hello") is True
    assert r.get("greeting") == b"hello"
    assert r.set("greeting", "x", nx=True) is None
    assert r.set("greeting", "bye", get=True) == b"hello"
    assert r.incrby("n", 5) == 5 and r.decr("n") == 4
    assert r.append("greeting", "!") == 4
    assert r.strlen("greeting") == 4
    assert r.getrange("greeting", 0, 1) == b"by"
    assert r.mset({"a": "1", "b": "2"}) is True
    assert r.mget("a", "missing", "b") == [b"1", None, b"2"]
    assert r.msetnx({"a": "9", "c": "3"}) is False
    assert r.type("a") == b"string" and r.type("missing") == b"none"
    assert r.rename("a", "z") is True
    assert r.exists("a", "z") == 1
    assert sorted(r.keys("*")) == [b"b", b"greeting", b"n", b"z"]
    assert sorted(r.scan_iter(match="[bz]*", count=2)) == [b"b", b"z"]
    assert r.dbsize() == 4
    assert r.getdel("z") == b"1"
    assert r.unlink("b", "n") == 2
    # the collection families: RESP3 maps, sets and doubles become dicts, sets, floats
    assert r.hset("h", mapping={"f": "1", "g": "x"}) == 2
    assert r.hgetall("h") == {b"f": b"1", b"g": b"x"}
    assert r.hincrbyfloat("h", "f", 0.5) == 1.5
    assert r.hmget("h", "g", "missing") == [b"x", None]
    assert sorted(r.hkeys("h")) == [b"f", b"g"] and r.hlen("h") == 2
    assert r.rpush("l", "a", "b", "c") == 3 and r.lrange("l", 0, -1) == [b"a", b"b", b"c"]
    assert r.lpop("l", 2) == [b"a", b"b"] and r.lpop("missing", 2) is None
    assert r.lpos("l", "c") == 0 and r.llen("l") == 1
    assert r.sadd("s", "a", "b") == 2 and r.smembers("s") == {b"a", b"b"}
    assert r.sinter("s", "missing") == set() and r.sismember("s", "a")
    assert r.zadd("z", {"m": 1.5, "n": 2}) == 2
    assert r.zscore("z", "m") == 1.5 and r.zscore("z", "x") is None
    assert r.zincrby("z", 1, "m") == 2.5
    # RESP3: [member, score] pairs as lists (as redis-server 7 sends them), RESP2: tuples
    pairs = [tuple(p) for p in r.zrange("z", 0, -1, withscores=True)]
    assert pairs == [(b"n", 2.0), (b"m", 2.5)], pairs
    assert r.zrangebyscore("z", "(2", "+inf") == [b"m"] and r.zrank("z", "m") == 1
    assert r.type("h") == b"hash" and r.type("z") == b"zset"
    try:
        r.get("h")
        raise AssertionError("GET of a hash accepted")
    except redis.ResponseError as e:
        assert str(e).startswith("WRONGTYPE"), e
    assert r.incrbyfloat("f", 0.1) == 0.1 and r.incrbyfloat("f", 0.2) == 0.3
    assert r.delete("h", "l", "s", "z", "f") == 5
    assert r.client_getname() is None
    # transactions: a pipeline with transaction=True is MULTI/EXEC; WATCH makes it fail
    # with WatchError when a watched key changed (here by another connection)
    with r.pipeline() as p:
        p.set("t", "1").incr("t").get("t")
        assert p.execute() == [True, 2, b"2"]
    other = redis.Redis(connection_pool=r.connection_pool)  # another connection of the pool
    with r.pipeline() as p:
        p.watch("t")
        assert p.get("t") == b"2"
        other.set("t", "9")
        p.multi()
        p.set("t", "3")
        try:
            p.execute()
            raise AssertionError("EXEC ran although a watched key changed")
        except redis.WatchError:
            pass
    assert r.get("t") == b"9"
    assert r.transaction(lambda p: p.multi() or p.incr("t"), "t") == [10]
    try:
        r.execute_command("NOSUCH", "x")
        raise AssertionError("unknown command accepted")
    except redis.ResponseError as e:
        assert str(e).startswith("unknown command 'NOSUCH'"), e
    print(f"{label}: ok (redis-py {redis.__version__}, protocol {r.connection_pool.connection_kwargs.get('protocol')})")


def main():
    host, port = sys.argv[1].rsplit(":", 1) if len(sys.argv) > 1 else ("127.0.0.1", "6379")
    check(redis.Redis(host=host, port=int(port)), "redis.Redis() defaults")
    check(redis.Redis(host=host, port=int(port), protocol=3), "redis.Redis(protocol=3)")
    check(redis.Redis(host=host, port=int(port), protocol=2), "redis.Redis(protocol=2)")


if __name__ == "__main__":
    main()
