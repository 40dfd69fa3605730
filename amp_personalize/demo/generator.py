"""A research community's Amplitude traffic, generated from a seed instead of downloaded.

Demos, benchmarks and model evaluation need events with the quirks of the real stream (retries,
late batches, case variants, a few broken events) and a known ground truth (each user's taste), with
no credentials, no network and no clock: the same arguments always give the same bytes.
"""

from __future__ import annotations

import argparse
import bisect
import gzip
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, NamedTuple

import numpy as np
import orjson

SECOND_MS = 1_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
# Fixed rather than "now" so the output does not depend on the day it is generated.
DEFAULT_END_MS = 1_768_435_200_000  # 2026-01-15 00:00:00 UTC
AMPLITUDE_APP_ID = 187_520

TOPICS = (
    "machine_learning", "neuroscience", "genomics", "oncology", "immunology", "climate_science",
    "ecology", "materials_science", "astrophysics", "quantum_physics", "economics", "public_health",
)
ITEM_TYPES = ("paper", "post", "fundraiser")
ITEM_TYPE_SHARE = (0.62, 0.30, 0.08)
FEED_TYPES = ("popular", "latest", "following", "for_you")
FEED_TYPE_SHARE = (0.35, 0.15, 0.15, 0.35)
FEED_TYPE_CUMULATIVE = tuple(np.cumsum(FEED_TYPE_SHARE).tolist())
FEEDS_PER_SESSION = tuple(np.cumsum([0.60, 0.24, 0.10, 0.06]).tolist())  # 1 to 4 feeds
SCROLLS_PER_FEED = tuple(np.cumsum([0.35, 0.30, 0.20, 0.15]).tolist())  # 0 to 3 scrolls
INITIAL_FEED_SIZE = 20
MIN_ITEMS = 100  # below this, feeds of 20-50 distinct items cannot be drawn early in the window
# A couple of ids outside ASCII, as a real user base has, so encoding slips show up downstream.
UNICODE_USER_IDS = {7: "usuário_7", 42: "研究者_42"}
UNICODE_ITEM_IDS = {12: "論文_12", 99: "пост_99"}

# Popularity of the item at rank r is proportional to r**-ZIPF_EXPONENT.
ZIPF_EXPONENT = 1.0
# Share of the catalog that already exists when the window opens; the rest is posted during it.
BACKLOG_SHARE = 0.8
BACKLOG_MS = 365 * DAY_MS
MEAN_SESSIONS_PER_DAY = 2.0
ACTIVITY_SIGMA = 1.1  # lognormal spread of sessions per day across users: a few heavy users
MIN_SESSION_GAP_MS = 30 * 60 * SECOND_MS  # Amplitude starts a new session after 30 idle minutes

# Click model: P(click) = BASE_CLICK * engagement * lift / (1 + position / POSITION_DECAY).
BASE_CLICK = 0.035
TASTE_LIFT = 7.0
POSITION_DECAY = 3.0
MAX_CLICK = 0.9
SEARCH_RATE = 0.15
SEARCH_CLICK_RATE = 0.45
SEARCH_SUFFIXES = ("", " review", " dataset", " 2025", " preprint")
DONATION_AMOUNTS = (5, 10, 20, 25, 50, 100)
# Hiding an item straight from the feed, without opening it.
FEED_HIDE_LIKED = 0.0005
FEED_HIDE_OTHER = 0.006

ANY_TYPE = ITEM_TYPES
Reaction = tuple[str, tuple[str, ...], float, float]
# (reaction, item types it applies to, P after a click on a liked item, P on any other item)
POSITIVE_REACTIONS: tuple[Reaction, ...] = (
    ("upvote", ANY_TYPE, 0.22, 0.03),
    ("download", ("paper",), 0.35, 0.06),
    ("share", ANY_TYPE, 0.07, 0.01),
    ("donate", ("fundraiser",), 0.10, 0.01),
    ("fundraise", ("fundraiser",), 0.05, 0.005),
)
# Only drawn when the user had nothing positive to say.
NEGATIVE_REACTIONS: tuple[Reaction, ...] = (
    ("downvote", ANY_TYPE, 0.01, 0.10),
    ("hide", ANY_TYPE, 0.003, 0.06),
    ("flag", ANY_TYPE, 0.002, 0.015),
)
# Money moves on the platform's servers, which track them through Amplitude's HTTP API:
# no device, no session.
BACKEND_EVENTS = frozenset({"donate", "fundraise"})
BACKEND_LIBRARY = "http/2.0"

# Delivery quirks of Amplitude's streaming destinations.
LATE_RATE = 0.02
LATE_DELAY_MS = (1 * HOUR_MS, 8 * HOUR_MS)
DUPLICATE_RATE = 0.03
RETRY_DELAY_MS = ((1 * SECOND_MS, 60 * SECOND_MS), (5 * 60 * SECOND_MS, 4 * HOUR_MS))
RECEIVE_LATENCY_MS = (150, 2_500)
CASE_VARIANT_RATE = 0.01
MALFORMED_RATE = 0.002
UNKNOWN_EVENT_TYPES = ("clik", "$exposure", "[Amplitude] Element Clicked", "feed_loaded")

# (country, UTC offset in hours, language, share of users)
COUNTRIES = (
    ("United States", -5.0, "English", 0.30),
    ("United Kingdom", 0.0, "English", 0.08),
    ("Germany", 1.0, "German", 0.07),
    ("India", 5.5, "English", 0.10),
    ("China", 8.0, "Chinese", 0.08),
    ("Brazil", -3.0, "Portuguese", 0.06),
    ("Japan", 9.0, "Japanese", 0.05),
    ("Canada", -5.0, "English", 0.06),
    ("France", 1.0, "French", 0.05),
    ("Nigeria", 1.0, "English", 0.04),
    ("Australia", 10.0, "English", 0.05),
    ("Spain", 1.0, "Spanish", 0.06),
)
UNICODE_USER_COUNTRY = {7: "Brazil", 42: "Japan"}
PEAK_LOCAL_HOUR = 14.0
ROLES = ("researcher", "student", "journalist", "funder")
ROLE_SHARE = (0.55, 0.30, 0.10, 0.05)


class Device(NamedTuple):
    platform: str
    os_name: str
    os_version: str
    device_family: str
    library: str


DEVICE_PROFILES = (
    (Device("Web", "Chrome", "131", "Windows", "amplitude-ts/2.11.9"), 0.36),
    (Device("Web", "Chrome", "131", "Mac OS X", "amplitude-ts/2.11.9"), 0.20),
    (Device("Web", "Safari", "18.1", "Mac OS X", "amplitude-ts/2.11.9"), 0.12),
    (Device("Web", "Firefox", "133", "Linux", "amplitude-ts/2.11.9"), 0.08),
    (Device("iOS", "ios", "18.1", "Apple iPhone", "amplitude-swift/1.9.2"), 0.13),
    (Device("Android", "android", "15", "Google Pixel 8", "amplitude-kotlin/1.19.1"), 0.11),
)


def _rng(seed: int, stream: int) -> np.random.Generator:
    """Independent streams, so the catalog stays the same when the number of users or days changes."""
    return np.random.default_rng([seed, stream])


def _topic_share(seed: int) -> np.ndarray:
    """Some fields are much bigger than others, in items and in fans alike."""
    return _rng(seed, 0).dirichlet(np.full(len(TOPICS), 4.0))


def _uuid4(raw: bytes) -> str:
    return str(uuid.UUID(bytes=raw, version=4))


def _uuid4s(rng: np.random.Generator, n: int) -> list[str]:
    """Random (version 4) UUID strings; formatted in bulk because there is one per event."""
    octets = np.frombuffer(rng.bytes(16 * n), dtype=np.uint8).reshape(n, 16).copy()
    octets[:, 6] = octets[:, 6] & 0x0F | 0x40
    octets[:, 8] = octets[:, 8] & 0x3F | 0x80
    text = octets.tobytes().hex()
    return [
        f"{text[k:k + 8]}-{text[k + 8:k + 12]}-{text[k + 12:k + 16]}-{text[k + 16:k + 20]}-{text[k + 20:k + 32]}"
        for k in range(0, 32 * n, 32)
    ]


def _draw_without_replacement(weights: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Like rng.choice(replace=False, p=...) in draw order, at a third of the cost (exponential keys)."""
    with np.errstate(divide="ignore"):
        keys = rng.exponential(size=len(weights)) / weights
    size = min(size, int(np.count_nonzero(weights)))
    if size == 0:
        return np.empty(0, dtype=np.int64)
    top = np.argpartition(keys, size - 1)[:size]
    return top[np.argsort(keys[top], kind="stable")]


@dataclass(frozen=True)
class Catalog:
    """The site's papers, posts and fundraisers."""

    ids: list[str]
    topics: np.ndarray  # index into TOPICS
    types: np.ndarray  # index into ITEM_TYPES
    popularity: np.ndarray  # long-tailed, sums to 1
    created: np.ndarray  # in [0, 1): below BACKLOG_SHARE existed before the window


def build_catalog(seed: int, n_items: int) -> Catalog:
    """Popularity ranks are shuffled independently of topic, so every field has its hits and its long tail."""
    rng = _rng(seed, 1)
    topics = rng.choice(len(TOPICS), n_items, p=_topic_share(seed))
    types = rng.choice(len(ITEM_TYPES), n_items, p=ITEM_TYPE_SHARE)
    popularity = 1.0 / (rng.permutation(n_items) + 1.0) ** ZIPF_EXPONENT
    ids = [UNICODE_ITEM_IDS.get(i, f"doc_{i}") for i in range(n_items)]
    return Catalog(ids, topics, types, popularity / popularity.sum(), rng.random(n_items))


@dataclass(frozen=True)
class Population:
    """The site's users: what they care about and how they show up."""

    ids: list[str]
    topics: list[tuple[int, ...]]  # 1 or 2 preferred topics
    sessions_per_day: np.ndarray
    engagement: np.ndarray  # multiplies every click probability
    countries: np.ndarray  # index into COUNTRIES
    devices: list[list[tuple[str, int]]]  # (device_id, index into DEVICE_PROFILES); first is primary
    amplitude_ids: list[int]
    user_properties: list[dict]


def _preferred_topics(rng: np.random.Generator, share: np.ndarray) -> tuple[int, ...]:
    count = 2 if rng.random() < 0.45 else 1
    return tuple(sorted(int(t) for t in rng.choice(len(TOPICS), count, replace=False, p=share)))


def _devices(rng: np.random.Generator) -> list[tuple[str, int]]:
    """Most people use one browser; a third also use the mobile app or a second machine."""
    count = 2 if rng.random() < 0.35 else 1
    profile_share = np.array([share for _, share in DEVICE_PROFILES])
    profiles = rng.choice(len(DEVICE_PROFILES), count, replace=False, p=profile_share / profile_share.sum())
    return [(_uuid4(rng.bytes(16)), int(p)) for p in profiles]


def build_population(seed: int, n_users: int) -> Population:
    """Activity is lognormal: most users visit a few times, a handful every day, as on any community site."""
    rng = _rng(seed, 2)
    share = _topic_share(seed)
    topics = [_preferred_topics(rng, share) for _ in range(n_users)]
    activity = rng.lognormal(-ACTIVITY_SIGMA**2 / 2, ACTIVITY_SIGMA, n_users)
    country_share = np.array([c[3] for c in COUNTRIES])
    countries = rng.choice(len(COUNTRIES), n_users, p=country_share / country_share.sum())
    names = [c[0] for c in COUNTRIES]
    for user, country in UNICODE_USER_COUNTRY.items():
        if user < n_users:
            countries[user] = names.index(country)
    roles = rng.choice(len(ROLES), n_users, p=ROLE_SHARE)
    cohorts = rng.integers(0, 36, n_users)
    return Population(
        ids=[UNICODE_USER_IDS.get(u, str(u + 1)) for u in range(n_users)],
        topics=topics,
        sessions_per_day=np.minimum(MEAN_SESSIONS_PER_DAY * activity, 15.0),
        engagement=rng.lognormal(0.0, 0.35, n_users),
        countries=countries,
        devices=[_devices(rng) for _ in range(n_users)],
        amplitude_ids=[int(a) for a in rng.integers(10**11, 10**12, n_users)],
        user_properties=[
            {"role": ROLES[r], "signup_cohort": f"{2023 + c // 12}-{c % 12 + 1:02d}"} for r, c in zip(roles, cohorts)
        ],
    )


@dataclass(frozen=True)
class Taste:
    """The ground truth the events were drawn from, so an evaluation can check recommendations follow it."""

    user_topics: dict[str, tuple[str, ...]]
    item_topic: dict[str, str]
    item_type: dict[str, str]

    def likes(self, user_id: str, item_id: str) -> bool:
        return self.item_topic.get(item_id) in self.user_topics.get(user_id, ())


def user_taste(seed: int = 7, n_users: int = 300, n_items: int = 1500) -> Taste:
    """Each user's preferred topics and each item's topic and type, as generate_events used them."""
    catalog = build_catalog(seed, n_items)
    population = build_population(seed, n_users)
    return Taste(
        user_topics={uid: tuple(TOPICS[t] for t in ts) for uid, ts in zip(population.ids, population.topics)},
        item_topic={iid: TOPICS[t] for iid, t in zip(catalog.ids, catalog.topics)},
        item_type={iid: ITEM_TYPES[t] for iid, t in zip(catalog.ids, catalog.types)},
    )


@dataclass
class World:
    """Catalog and users placed in the time window, with the feeds the site would serve them."""

    catalog: Catalog
    population: Population
    start_ms: int
    end_ms: int
    created_ms: np.ndarray = field(init=False)
    newest_first: np.ndarray = field(init=False)
    topic_masks: np.ndarray = field(init=False)  # (user, topic) -> prefers
    _feed_weights: dict[tuple[tuple[int, ...], str], np.ndarray] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        created = self.catalog.created
        backlog = self.start_ms - (BACKLOG_SHARE - created) / BACKLOG_SHARE * BACKLOG_MS
        fresh = self.start_ms + (created - BACKLOG_SHARE) / (1 - BACKLOG_SHARE) * (self.end_ms - self.start_ms)
        self.created_ms = np.where(created < BACKLOG_SHARE, backlog, fresh).astype(np.int64)
        self.newest_first = np.argsort(-self.created_ms, kind="stable")
        self.topic_masks = np.zeros((len(self.population.ids), len(TOPICS)), dtype=bool)
        for user, topics in enumerate(self.population.topics):
            self.topic_masks[user, list(topics)] = True

    def likes(self, user: int, items: np.ndarray) -> np.ndarray:
        return self.topic_masks[user, self.catalog.topics[items]]

    def item_type(self, item: int) -> str:
        return ITEM_TYPES[self.catalog.types[item]]

    def feed(self, user: int, feed_type: str, t_ms: int, size: int, rng: np.random.Generator) -> np.ndarray:
        """The items a feed shows, top first; only items already posted at t_ms."""
        if feed_type == "latest":
            posted = self.newest_first[self.created_ms[self.newest_first] <= t_ms]
            if len(posted) >= INITIAL_FEED_SIZE:
                return posted[:size]
            feed_type = "popular"
        items = _draw_without_replacement(self._weights(user, feed_type) * (self.created_ms <= t_ms), size, rng)
        if feed_type == "popular":
            items = items[np.argsort(-self.catalog.popularity[items], kind="stable")]
        return items

    def search_result(self, topic: int, t_ms: int, rng: np.random.Generator) -> int | None:
        weights = self.catalog.popularity * (self.catalog.topics == topic) * (self.created_ms <= t_ms)
        total = weights.sum()
        return None if total == 0 else int(rng.choice(len(weights), p=weights / total))

    def _weights(self, user: int, feed_type: str) -> np.ndarray:
        """Following and for-you feeds lean to the user's fields; a recommender is good, not perfect."""
        key = (self.population.topics[user], feed_type)
        if key not in self._feed_weights:
            popular = self.catalog.popularity
            on_topic = popular * self.topic_masks[user, self.catalog.topics]
            on_topic = on_topic / on_topic.sum() if on_topic.sum() > 0 else popular
            taste_share = {"popular": 0.0, "following": 0.55, "for_you": 0.75}[feed_type]
            self._feed_weights[key] = taste_share * on_topic + (1 - taste_share) * popular
        return self._feed_weights[key]


class Record(NamedTuple):
    """One event before it is dressed in Amplitude's export format."""

    time_ms: int
    user: int
    device: int  # index into the user's devices; -1 = the platform's backend
    session_id: int
    event_type: str
    properties: dict


@dataclass
class Visit:
    """A session in progress: who, on which device, and the clock."""

    user: int
    device: int
    session_id: int
    t_ms: int


class Sessions:
    """Users' visits, event by event, in the order each user causes them."""

    def __init__(self, world: World, rng: np.random.Generator) -> None:
        self.world = world
        self.rng = rng
        self.records: list[Record] = []
        self.item_ids = np.array(world.catalog.ids, dtype=object)
        self._pool: list[float] = []
        self._next = 0

    def run(self) -> list[Record]:
        for user in range(len(self.world.population.ids)):
            free_at = 0
            for start in self._session_starts(user).tolist():
                start = max(start, free_at)
                if start >= self.world.end_ms:
                    break
                free_at = self._session(user, start) + MIN_SESSION_GAP_MS
        return self.records

    def _session_starts(self, user: int) -> np.ndarray:
        """Visits cluster in the user's local afternoon, which is a different UTC hour per country."""
        days = (self.world.end_ms - self.world.start_ms) // DAY_MS
        count = self.rng.poisson(self.world.population.sessions_per_day[user] * days)
        peak_utc = PEAK_LOCAL_HOUR - COUNTRIES[self.world.population.countries[user]][1]
        hours = self.rng.normal(peak_utc, 3.5, count) % 24
        starts = self.world.start_ms + self.rng.integers(0, days, count) * DAY_MS + hours * HOUR_MS
        return np.sort(starts.astype(np.int64))

    def _random(self) -> float:
        """A uniform in [0, 1) from a pre-drawn pool: one generator call per event would dominate the run."""
        if self._next == len(self._pool):
            self._pool = self.rng.random(65_536).tolist()
            self._next = 0
        self._next += 1
        return self._pool[self._next - 1]

    def _gap(self, low_s: float, high_s: float) -> int:
        return int((low_s + (high_s - low_s) * self._random()) * SECOND_MS)

    def _pick(self, cumulative: tuple[float, ...]) -> int:
        return min(bisect.bisect_right(cumulative, self._random() * cumulative[-1]), len(cumulative) - 1)

    def _emit(self, visit: Visit, event_type: str, properties: dict, after_ms: int) -> None:
        visit.t_ms += after_ms
        if event_type in BACKEND_EVENTS:
            self.records.append(Record(visit.t_ms, visit.user, -1, -1, event_type, properties))
        else:
            self.records.append(Record(visit.t_ms, visit.user, visit.device, visit.session_id, event_type, properties))

    def _session(self, user: int, start_ms: int) -> int:
        """Returns when the session ended."""
        devices = self.world.population.devices[user]
        device = 0 if len(devices) == 1 or self._random() < 0.75 else 1
        visit = Visit(user, device, start_ms, start_ms)
        self._emit(visit, "session_start", {}, 0)
        self._emit(visit, "page_view", {"page_path": "/"}, self._gap(0.2, 1.5))
        for _ in range(1 + self._pick(FEEDS_PER_SESSION)):
            if self._random() < SEARCH_RATE:
                self._search(visit)
            self._feed(visit)
        return visit.t_ms

    def _search(self, visit: Visit) -> None:
        topics = self.world.population.topics[visit.user]
        own_field = self._random() < 0.8
        topic = topics[int(self._random() * len(topics))] if own_field else int(self._random() * len(TOPICS))
        suffix = SEARCH_SUFFIXES[int(self._random() * len(SEARCH_SUFFIXES))]
        query = TOPICS[topic].replace("_", " ") + suffix
        self._emit(visit, "page_view", {"page_path": "/search"}, self._gap(2, 20))
        self._emit(visit, "search", {"query": query, "results_count": int(self._random() * 240)}, self._gap(2, 10))
        if self._random() < SEARCH_CLICK_RATE:
            item = self.world.search_result(topic, visit.t_ms, self.rng)
            if item is not None:
                self._click(visit, item, {"source": "search"})

    def _feed(self, visit: Visit) -> None:
        """An initial impression of 20 items, then a few scrolls; clicks and hides as the user reads."""
        feed_type = FEED_TYPES[self._pick(FEED_TYPE_CUMULATIVE)]
        scroll_sizes = [5 + int(self._random() * 6) for _ in range(self._pick(SCROLLS_PER_FEED))]
        size = INITIAL_FEED_SIZE + sum(scroll_sizes)
        items = self.world.feed(visit.user, feed_type, visit.t_ms, size, self.rng)
        source = {"feed_type": feed_type}
        if feed_type == "for_you":
            source["recommendation_id"] = f"RID-{self.rng.bytes(12).hex()}"
        clicked, hidden = self._reactions_in_feed(visit.user, items)
        acted = np.flatnonzero(clicked | hidden).tolist()
        self._emit(visit, "page_view", {"page_path": f"/feed/{feed_type}"}, self._gap(1, 8))
        lo = 0
        for batch, batch_size in enumerate([INITIAL_FEED_SIZE, *scroll_sizes]):
            hi = min(lo + batch_size, len(items))
            if hi <= lo:
                break
            event_type = "initial_impression" if batch == 0 else "scroll_impression"
            properties = {"items_shown": self.item_ids[items[lo:hi]].tolist(), **source}
            self._emit(visit, event_type, properties, self._gap(0.5, 2) if batch == 0 else self._gap(4, 30))
            for position in (p for p in acted if lo <= p < hi):
                item = int(items[position])
                if clicked[position]:
                    self._click(visit, item, source)
                else:
                    self._emit(visit, "hide", self._item_properties(item, source), self._gap(2, 15))
            lo = hi

    def _reactions_in_feed(self, user: int, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Which shown items get clicked (top positions and liked topics far more) or hidden unopened."""
        likes = self.world.likes(user, items)
        attention = 1.0 / (1.0 + np.arange(len(items)) / POSITION_DECAY)
        p_click = BASE_CLICK * self.world.population.engagement[user] * np.where(likes, TASTE_LIFT, 1.0) * attention
        draws = self.rng.random((2, len(items)))
        clicked = draws[0] < np.minimum(p_click, MAX_CLICK)
        hidden = ~clicked & (draws[1] < np.where(likes, FEED_HIDE_LIKED, FEED_HIDE_OTHER))
        return clicked, hidden

    def _item_properties(self, item: int, source: dict) -> dict:
        properties = {"item_id": self.world.catalog.ids[item], "item_type": self.world.item_type(item)}
        return properties | {k: v for k, v in source.items() if k == "recommendation_id"}

    def _click(self, visit: Visit, item: int, source: dict) -> None:
        item_type = self.world.item_type(item)
        click = {"item_id": self.world.catalog.ids[item], "item_type": item_type, **source}
        self._emit(visit, "click", click, self._gap(2, 30))
        self._emit(visit, "page_view", {"page_path": f"/{item_type}/{click['item_id']}"}, self._gap(0.3, 1.2))
        likes = bool(self.world.topic_masks[visit.user, self.world.catalog.topics[item]])
        reactions = self._draw(POSITIVE_REACTIONS, item_type, likes) or self._draw(NEGATIVE_REACTIONS, item_type, likes)
        for reaction in reactions:
            properties = self._item_properties(item, source) | self._payment(reaction)
            self._emit(visit, reaction, properties, self._gap(8, 120))

    def _draw(self, table: Iterable[Reaction], item_type: str, likes: bool) -> list[str]:
        return [
            name
            for name, types, p_liked, p_other in table
            if item_type in types and self._random() < (p_liked if likes else p_other)
        ]

    def _payment(self, reaction: str) -> dict:
        if reaction == "donate":
            return {"amount": float(DONATION_AMOUNTS[int(self._random() * len(DONATION_AMOUNTS))]), "currency": "USD"}
        if reaction == "fundraise":
            return {"amount": float(10 + int(self._random() * 1_990)), "currency": "RSC"}
        return {}


def _utc_strings(ms: np.ndarray) -> list[str]:
    """Amplitude's `YYYY-MM-DD HH:MM:SS.ffffff` UTC strings, for many timestamps at once."""
    text = np.datetime_as_string(ms.astype("datetime64[ms]").astype("datetime64[us]"), unit="us")
    return np.char.replace(text, "T", " ").tolist()


def _source_fields(population: Population, user: int, device: int) -> dict:
    """What Amplitude knows about where an event came from: the user's device, or the backend's HTTP API."""
    fields: dict = {"amplitude_id": population.amplitude_ids[user], "app": AMPLITUDE_APP_ID}
    if device < 0:
        return {"device_id": None, **fields, "platform": None, "os_name": None, "os_version": None,
                "device_family": None, "country": None, "language": None, "library": BACKEND_LIBRARY}
    device_id, profile = population.devices[user][device]
    country, _, language, _ = COUNTRIES[population.countries[user]]
    return {"device_id": device_id, **fields, **DEVICE_PROFILES[profile][0]._asdict(),
            "country": country, "language": language}


def _as_amplitude_events(
    records: list[Record], delivered_ms: np.ndarray, world: World, rng: np.random.Generator
) -> list[dict]:
    """Records dressed as Amplitude export objects, in their records' order."""
    n = len(records)
    event_times = _utc_strings(np.array([r.time_ms for r in records], dtype=np.int64))
    received_ms = delivered_ms + rng.integers(*RECEIVE_LATENCY_MS, n)
    received = _utc_strings(received_ms)
    uploaded = _utc_strings(received_ms + rng.integers(5, 80, n))
    uuids = _uuid4s(rng, n)
    insert_ids = _uuid4s(rng, n)
    population = world.population
    sources: dict[tuple[int, int], dict] = {}
    counters: dict[tuple[int, int], int] = {}  # Amplitude's event_id counts up per device
    events = []
    for i, r in enumerate(records):
        key = (r.user, r.device)
        if key not in sources:
            sources[key] = _source_fields(population, r.user, r.device)
        counters[key] = counters.get(key, 0) + 1
        events.append({
            "event_type": r.event_type,
            "user_id": population.ids[r.user],
            "session_id": r.session_id,
            "time": r.time_ms,
            "event_time": event_times[i],
            "client_event_time": event_times[i],
            "server_received_time": received[i],
            "server_upload_time": uploaded[i],
            "uuid": uuids[i],
            "$insert_id": insert_ids[i],
            "event_id": counters[key],
            **sources[key],
            "event_properties": r.properties,
            "user_properties": dict(population.user_properties[r.user]),
        })
    return events


def _vary_case(events: list[dict], rng: np.random.Generator) -> None:
    """Hand-written tracking calls spell event types inconsistently ("Click", "CLICK")."""
    picked = np.flatnonzero(rng.random(len(events)) < CASE_VARIANT_RATE)
    styles: tuple[Callable[[str], str], ...] = (str.capitalize, str.upper, str.title)
    for i, style in zip(picked, rng.integers(0, len(styles), len(picked))):
        events[i]["event_type"] = styles[style](events[i]["event_type"])


def _is(event: dict, *types: str) -> bool:
    return event["event_type"].lower() in types


def _drop_user_id(event: dict, rng: np.random.Generator) -> None:
    del event["user_id"]


def _drop_click_item(event: dict, rng: np.random.Generator) -> None:
    del event["event_properties"]["item_id"]


def _empty_impression(event: dict, rng: np.random.Generator) -> None:
    event["event_properties"]["items_shown"] = []


def _unknown_type(event: dict, rng: np.random.Generator) -> None:
    event["event_type"] = UNKNOWN_EVENT_TYPES[int(rng.integers(len(UNKNOWN_EVENT_TYPES)))]


def _time_as_string(event: dict, rng: np.random.Generator) -> None:
    del event["time"]  # event_time, an UTC string, remains


# (which events a breakage can hit, the breakage); each appears at least once.
BREAKAGES: tuple[tuple[Callable[[dict], bool], Callable[[dict, np.random.Generator], None]], ...] = (
    (lambda e: e["device_id"] is not None, _drop_user_id),
    (lambda e: _is(e, "click") and "item_id" in e["event_properties"], _drop_click_item),
    (lambda e: _is(e, "initial_impression", "scroll_impression"), _empty_impression),
    (lambda e: True, _unknown_type),
    (lambda e: True, _time_as_string),
)


def _break_a_few(events: list[dict], rng: np.random.Generator) -> None:
    """The handful of broken events every real stream has, each kind the product must survive."""
    per_kind = max(1, round(len(events) * MALFORMED_RATE / len(BREAKAGES)))
    order = rng.permutation(len(events)).tolist()
    broken: set[int] = set()
    for applies, breakage in BREAKAGES:
        hits = 0
        for i in order:
            if hits == per_kind:
                break
            if i not in broken and applies(events[i]):
                breakage(events[i], rng)
                broken.add(i)
                hits += 1


def _delivery_ms(times: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """When Amplitude forwards each event: at once, or hours late for an offline device's batch."""
    late = rng.random(len(times)) < LATE_RATE
    return np.where(late, times + rng.integers(*LATE_DELAY_MS, len(times)), times)


def _with_retries(events: list[dict], delivered_ms: np.ndarray, rng: np.random.Generator) -> list[tuple[int, dict]]:
    """Exact copies of some events, resent seconds to hours later, then everything in delivery
    order, each with the time Amplitude delivers it."""
    retried = np.flatnonzero(rng.random(len(events)) < DUPLICATE_RATE)
    soon = rng.random(len(retried)) < 0.5
    seconds, hours = (rng.integers(low, high, len(retried)) for low, high in RETRY_DELAY_MS)
    delay = np.where(soon, seconds, hours)
    everything = events + [orjson.loads(orjson.dumps(events[i])) for i in retried]
    when = np.concatenate([delivered_ms, delivered_ms[retried] + delay])
    order = np.lexsort((np.arange(len(everything)), when))
    return [(int(when[i]), everything[i]) for i in order]


def generate_deliveries(
    n_users: int = 300, n_items: int = 1500, days: int = 14, seed: int = 7, end_ms: int | None = None
) -> list[tuple[int, dict]]:
    """(delivery time in epoch ms, event) for Amplitude export events of `days` days ending at
    end_ms, in the order a webhook would get them. Late batches and retries are delivered after
    end_ms too, as they would be."""
    if n_users < 1 or n_items < MIN_ITEMS or days < 1 or seed < 0:
        raise ValueError(f"need n_users >= 1, n_items >= {MIN_ITEMS}, days >= 1, seed >= 0")
    end_ms = DEFAULT_END_MS if end_ms is None else int(end_ms)
    world = World(build_catalog(seed, n_items), build_population(seed, n_users), end_ms - days * DAY_MS, end_ms)
    records = [r for r in Sessions(world, _rng(seed, 3)).run() if r.time_ms < end_ms]
    records.sort(key=lambda r: r.time_ms)
    quirks = _rng(seed, 4)
    delivered_ms = _delivery_ms(np.array([r.time_ms for r in records], dtype=np.int64), quirks)
    events = _as_amplitude_events(records, delivered_ms, world, quirks)
    _vary_case(events, quirks)
    _break_a_few(events, quirks)
    return _with_retries(events, delivered_ms, quirks)


def generate_events(
    n_users: int = 300, n_items: int = 1500, days: int = 14, seed: int = 7, end_ms: int | None = None
) -> list[dict]:
    """Amplitude export events of `days` days ending at end_ms, in the order a webhook would get them."""
    return [event for _, event in generate_deliveries(n_users, n_items, days, seed, end_ms)]


def write_ndjson_gz(events: Iterable[dict], path: str | os.PathLike[str], chunk: int = 10_000) -> Path:
    """Gzipped NDJSON with a zero mtime and no file name in the header, so equal events give equal bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    lines: list[bytes] = []
    with open(partial, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as out:
        for event in events:
            lines.append(orjson.dumps(event))
            if len(lines) >= chunk:
                out.write(b"\n".join(lines) + b"\n")
                lines.clear()
        if lines:
            out.write(b"\n".join(lines) + b"\n")
    partial.replace(path)  # readers never see half a file
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write a seeded, realistic Amplitude event set as .ndjson.gz")
    parser.add_argument("path", type=Path)
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--items", type=int, default=1500)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    events = generate_events(args.users, args.items, args.days, args.seed)
    print(f"{len(events)} events -> {write_ndjson_gz(events, args.path)}")


if __name__ == "__main__":
    main()
