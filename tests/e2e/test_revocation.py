"""Topics taken away live (system.access.revoked) on the real local stack: the worker takes them off the
users' connection records before it posts the frame, a following event of the topic reaches only the
users still allowed, a resume cannot bring it back, hostile revocations change nothing, and both client
libraries stop asking for a revoked topic when they reconnect."""

from __future__ import annotations

import asyncio
import json
import secrets
from contextlib import AsyncExitStack
from typing import Any

import aiohttp

from fanout import Publisher
from fanout.client import Backoff, FanoutClient, token_url
from fanout.config import Settings
from fanout.envelope import now_iso
from fanout.tokens import sign
from tests.catalog_examples import payload
from tests.conftest import Stack
from tests.e2e.conftest import uid
from tests.e2e.product import MEMBERS, member_id
from tests.helpers import connect, sqs_client, wait_for
from tests.integration.test_client_live import fanout_js


async def _publish(stack: Stack, call: str, *args: Any, **kwargs: Any) -> str:
    """One call of the synchronous publisher (``publish``, ``revoke_topics``), as a domain service makes it."""
    publisher = await asyncio.to_thread(Publisher, stack.settings)
    try:
        return str(await asyncio.to_thread(getattr(publisher, call), *args, **kwargs))
    finally:
        publisher.close()


async def _announce(stack: Stack, organization: str) -> str:
    """An announcement to the organization's topic subscribers."""
    event = payload("organization.announcement", organizationId=organization)
    return await _publish(
        stack, "publish", "organization.announcement", topics=[f"organization:{organization}"], payload=event
    )


async def _topics(product_db: Any, settings: Settings, user: str) -> dict[str, list[str]]:
    """The topics each connection record of ``user`` holds, by connection id."""
    records = product_db[settings.connections_collection].find({"userId": user})
    return {doc["connectionId"]: doc.get("topics", []) async for doc in records}


#: fanout.js reconnecting as fast as the Python client below.
JS_OPTIONS = {"heartbeatS": 0.2, "backoffBaseMs": 50}


async def _member_of_organizations(
    live_stack: Stack, product_db: Any, prefix: str, n: int
) -> tuple[str, list[str], list[str], FanoutClient]:
    """A new user, member of ``n`` new organizations in the product's records: the user, the
    organizations, their topics, and a Python client of that user that reconnects fast."""
    s = live_stack.settings
    user, orgs = uid(prefix), [uid("org") for _ in range(n)]
    await product_db[MEMBERS].insert_many([{"_id": member_id(o, user)} for o in orgs])
    url = token_url(live_stack.ws_url, lambda: sign(user, s.jwt_key()))
    client = FanoutClient(url, heartbeat_s=0.2, backoff=Backoff(0.05, 0.5))
    return user, orgs, [f"organization:{o}" for o in orgs], client


async def test_a_revocation_empties_both_tabs_records_before_they_hear_it_and_stops_the_topic(
    live_stack: Stack, product_db: Any
) -> None:
    """A user subscribed to an organization in two tabs is removed from it: both tabs get the revocation,
    by then neither record holds the topic (its other topics and its user: topic stay), a member's
    record is untouched, the next announcement reaches the member and not the tabs, and a resume can
    bring it back neither by key (forbidden_stream) nor by event id (only the revocation is replayed)."""
    s = live_stack.settings
    org, other = uid("org"), uid("org")
    topic, kept = f"organization:{org}", f"organization:{other}"
    revoked, member = uid("r"), uid("m")
    ids = [member_id(org, revoked), member_id(org, member), member_id(other, revoked)]
    await product_db[MEMBERS].insert_many([{"_id": i} for i in ids])
    async with AsyncExitStack() as es, aiohttp.ClientSession() as http:
        tabs = [await connect(es, http, live_stack.ws_url, s, revoked) for _ in range(2)]
        stays = await connect(es, http, live_stack.ws_url, s, member)
        for tab in tabs:
            answer = await tab.ask({"action": "subscribe", "topics": [topic, kept, f"user:{revoked}"]})
            assert "subscribe.ok" == answer["type"], answer
        assert "subscribe.ok" == (await stays.ask({"action": "subscribe", "topics": [topic]}))["type"]

        await product_db[MEMBERS].delete_one({"_id": member_id(org, revoked)})  # the product's check first
        revocation = await _publish(live_stack, "revoke_topics", [revoked], [topic])
        seen: dict[int, list[str]] = {}  # tab -> every topic the user's records held when it had the frame

        async def heard_with_records() -> bool:
            for n, tab in enumerate(tabs):
                if revocation in tab.event_ids() and n not in seen:
                    seen[n] = [t for ts in (await _topics(product_db, s, revoked)).values() for t in ts]
            return len(seen) == 2

        await wait_for(heard_with_records)
        assert all(topic not in held for held in seen.values())
        [frame] = [e for e in tabs[0].events() if e["id"] == revocation]
        assert ("system.access.revoked", {"topics": [topic]}) == (frame["type"], frame["payload"])
        assert [[kept, f"user:{revoked}"]] * 2 == list((await _topics(product_db, s, revoked)).values())
        assert [[topic]] == list((await _topics(product_db, s, member)).values())

        after = await _announce(live_stack, org)
        await wait_for(lambda: after in stays.event_ids())
        await asyncio.sleep(0.5)  # a post to a revoked tab would have come with the member's
        assert all(after not in tab.event_ids() for tab in tabs)

        by_key = await tabs[0].ask({"action": "resume", "positions": {topic: 0}})
        assert ("forbidden_stream", topic) == (by_key["payload"].get("code"), by_key["payload"].get("key"))
        by_id = await tabs[0].ask({"action": "resume", "lastEventId": revocation})
        assert ("resume.ok", 1) == (by_id["type"], by_id["payload"]["replaying"])
        await wait_for(
            lambda: 2 == tabs[0].event_ids().count(revocation)
        )  # the replay came, without the topic's
        assert after not in tabs[0].event_ids()


def _revocation(target: dict[str, Any], topics: Any) -> dict[str, Any]:
    return {
        "v": 1, "id": f"evt_hostile_{secrets.token_hex(6)}", "type": "system.access.revoked",
        "payload": {"topics": topics}, "sentAt": now_iso(), "target": target,
    }  # fmt: skip


def _dead_letters(stack: Stack, wanted: set[str]) -> dict[str, str]:
    """Dead letters among ``wanted`` event ids received now, with their reasons (deleted once read)."""
    sqs = sqs_client(stack.settings)
    url = sqs.get_queue_url(QueueName=stack.settings.dlq_name)["QueueUrl"]
    found: dict[str, str] = {}
    for m in sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, MessageAttributeNames=["All"]
    ).get("Messages", []):
        event_id = json.loads(m["Body"]).get("id")
        if event_id in wanted:
            found[event_id] = m["MessageAttributes"]["fanout-reason"]["StringValue"]
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    sqs.close()
    return found


async def test_hostile_revocations_are_dead_lettered_with_their_reason_and_change_no_record(
    live_stack: Stack, product_db: Any
) -> None:
    """Revocations sent straight to the queue for everyone, for a topic, with topics that are not a list,
    101 topics or a user: topic are each dead-lettered with their reason on the first receive; no record
    loses a topic and no tab hears any of them."""
    s = live_stack.settings
    org, victim = uid("org"), uid("v")
    topic = f"organization:{org}"
    await product_db[MEMBERS].insert_one({"_id": member_id(org, victim)})
    hostile = {
        "broadcast": (_revocation({"broadcast": True}, [topic]), "bad_target"),
        "topic target": (_revocation({"topics": [topic]}, [topic]), "bad_target"),
        "topics not a list": (_revocation({"userIds": [victim]}, topic), "payload_schema"),
        "101 topics": (
            _revocation({"userIds": [victim]}, [f"organization:{org}-{i}" for i in range(100)] + [topic]),
            "payload_schema",
        ),
        "user: topic": (_revocation({"userIds": [victim]}, [topic, f"user:{victim}"]), "payload_schema"),
    }
    async with AsyncExitStack() as es, aiohttp.ClientSession() as http:
        tab = await connect(es, http, live_stack.ws_url, s, victim)
        answer = await tab.ask({"action": "subscribe", "topics": [topic, f"user:{victim}"]})
        assert "subscribe.ok" == answer["type"], answer
        sqs = sqs_client(s)
        url = sqs.get_queue_url(QueueName=s.queue_name)["QueueUrl"]
        for body, _ in hostile.values():
            sqs.send_message(QueueUrl=url, MessageBody=json.dumps(body))
        sqs.close()
        want = {body["id"]: reason for body, reason in hostile.values()}
        got: dict[str, str] = {}

        async def all_dead() -> bool:
            got.update(await asyncio.to_thread(_dead_letters, live_stack, set(want) - set(got)))
            return set(got) == set(want)

        await wait_for(all_dead, timeout=30)
        marker = await _publish(live_stack, "publish", "notification.new", user_ids=[victim],
                                payload=payload("notification.new"))  # fmt: skip
        await wait_for(
            lambda: marker in tab.event_ids()
        )  # posted after anything the worker had taken before it
        assert [[topic, f"user:{victim}"]] == list((await _topics(product_db, s, victim)).values())
        assert [marker] == tab.event_ids()
    assert want == got


async def test_both_client_libraries_drop_a_revoked_topic_and_keep_the_rest_when_they_reconnect(
    live_stack: Stack, product_db: Any
) -> None:
    """fanout.client and fanout.js, each subscribed to three organizations, hear the revocation of the
    first; the third is taken away without a frame (as for a tab that was away). Once their records are
    lost and they reconnect, each connection holds the second organization alone: the revoked topic is
    not asked for again, and the one the server now refuses does not cost the other."""
    s = live_stack.settings
    user, orgs, topics, py = await _member_of_organizations(live_stack, product_db, "c", 3)
    records = product_db[s.connections_collection]
    async with py, fanout_js(live_stack, user, options=JS_OPTIONS, topics=topics) as js:
        sub = await py.subscribe(topics)
        await asyncio.wait_for(py.connected.wait(), 10)

        async def held(expected: list[str]) -> bool:
            found = await _topics(product_db, s, user)
            return len(found) == 2 and all(sorted(t) == sorted(expected) for t in found.values())

        await wait_for(lambda: held(topics))
        await product_db[MEMBERS].delete_many(
            {"_id": {"$in": [member_id(orgs[0], user), member_id(orgs[2], user)]}}
        )
        revocation = await _publish(live_stack, "revoke_topics", [user], [topics[0]])
        got = await asyncio.wait_for(sub.get(), 10)
        assert (revocation, {"topics": [topics[0]]}) == (got["id"], got["payload"])
        await wait_for(lambda: revocation in [e["id"] for e in js.of("event")])
        assert topics[1:] == list(sub.topics)

        await records.delete_many({"userId": user})  # lost (pruned or expired): both reconnect
        await wait_for(lambda: held([topics[1]]), timeout=10)


async def test_both_client_libraries_keep_the_allowed_topic_after_more_refusals_than_retries(
    live_stack: Stack, product_db: Any
) -> None:
    """fanout.client and fanout.js, each subscribed to eight organizations, lose seven of them without a
    frame (a tab away while they were revoked). When they reconnect, the server refuses the seven
    (naming them all) and the eighth is still subscribed: dropping refused topics ends only when none is
    left."""
    s = live_stack.settings
    user, orgs, topics, py = await _member_of_organizations(live_stack, product_db, "k", 8)
    records = product_db[s.connections_collection]
    async with py, fanout_js(live_stack, user, options=JS_OPTIONS, topics=topics):
        await py.subscribe(topics)
        await asyncio.wait_for(py.connected.wait(), 10)

        async def held(expected: list[str]) -> bool:
            found = await _topics(product_db, s, user)
            return len(found) == 2 and all(sorted(t) == sorted(expected) for t in found.values())

        await wait_for(lambda: held(topics))
        await product_db[MEMBERS].delete_many({"_id": {"$in": [member_id(o, user) for o in orgs[:7]]}})
        await records.delete_many({"userId": user})  # lost (pruned or expired): both reconnect
        await wait_for(lambda: held(topics[7:]), timeout=15)
