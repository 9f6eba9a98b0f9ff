"""Contact features at cutoff 2024-01-01; the contacts table is optional."""

from __future__ import annotations

import pandas as pd
from _features_frames import build, client, contact, row


def test_contacts_per_campaign_in_the_last_year() -> None:
    contacts = [
        contact("c1", "2023-12-22", "prevention"),  # 10 days before D
        contact("c1", "2022-11-27", "prevention"),  # 400 days: outside the year
        contact("c1", "2023-01-02", "winback"),  # 364 days
        contact("c1", "2024-01-01", "winback"),  # at D: not known yet
    ]
    df = build([client("c1"), client("c2")], contacts=contacts)
    r = row(df, "c1")
    assert (r.prevention_contacts_365d, r.winback_contacts_365d) == (1, 1)
    assert r.days_since_last_contact == 10.0
    r2 = row(df, "c2")
    assert (r2.prevention_contacts_365d, r2.winback_contacts_365d) == (0, 0)
    assert pd.isna(r2.days_since_last_contact)


def test_without_a_contacts_table() -> None:
    df = build([client("c1")], contacts=None)
    r = row(df, "c1")
    assert (r.prevention_contacts_365d, r.winback_contacts_365d) == (0, 0)
    assert pd.isna(r.days_since_last_contact)
