"""The event catalog: domains, per-type policy, bounded metric labels."""

from fanout.catalog import DEFAULT_POLICY, OTHER, domain_of, metric_label, policy_for


def test_typing_indicators_expire_fast_and_notifications_do_not() -> None:
    """A typing indicator is worthless after seconds; a notification keeps for a day."""
    assert policy_for("chat.typing.started").max_age_s <= 10
    assert 0 == policy_for("chat.typing.stopped").rounds
    assert DEFAULT_POLICY == policy_for("notification.new")


def test_unknown_types_fold_into_one_label() -> None:
    """Metric labels come from the catalog; anything else is 'other'."""
    assert "notification.new" == metric_label("notification.new")
    assert OTHER == metric_label("notification.some_new_thing")
    assert "chat" == domain_of("chat.message")
