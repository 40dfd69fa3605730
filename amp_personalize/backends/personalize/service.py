"""The seed's PersonalizeService calls, kept for apps that ask Personalize directly.

Most apps read the cache (`GET /recommendations/{user_id}` or the lake), which costs no API
call; these answer live from the campaign, with the exclusion filter, as the seed's view did. An id
past 256 characters is asked for under the digest every other path uses (see `ids`), and an
answer naming a digest is mapped back to the item id it came from, found among the items of the
lake's interactions (read only when a digest comes back, and again for one it does not know).
"""

from __future__ import annotations

import time
from pathlib import Path

import polars as pl

from amp_personalize.backends.personalize.clients import Clients, make_clients
from amp_personalize.backends.personalize.ids import (
    DIGEST_PREFIX,
    MAX_ID,
    digests,
    fit_id,
)
from amp_personalize.backends.personalize.recommend import recommendations_request
from amp_personalize.backends.personalize.validation import validate
from amp_personalize.lake.parquet import scan_table
from amp_personalize.settings import PersonalizeSettings, Settings
from amp_personalize.transforms.interactions import INTERACTIONS_SCHEMA

# A digest the lake does not explain is looked for again at most this often: an item first seen
# since the last look, not a reason to rescan the history on every call.
RELOOK_SECONDS = 60.0


class PersonalizeService:
    def __init__(self, settings: PersonalizeSettings | None = None, clients: Clients | None = None, lake_dir: Path | None = None) -> None:
        env = Settings.from_env() if settings is None or lake_dir is None else None
        self.settings = settings or env.personalize
        self.clients = clients or make_clients(None)
        self.lake_dir = lake_dir or env.lake_dir
        self._originals: dict[str, str] = {}  # digest -> the long item id it stands for
        self._looked_at = -RELOOK_SECONDS

    def _ask(self, params: dict) -> list[dict]:
        validate("personalize-runtime", "GetRecommendations", params)
        reply = self.clients.runtime.get_recommendations(**params)
        items = [{"item_id": i["itemId"], "score": i.get("score")} for i in reply.get("itemList", [])]
        unknown = {i["item_id"] for i in items if i["item_id"].startswith(DIGEST_PREFIX)} - self._originals.keys()
        if unknown and time.monotonic() - self._looked_at >= RELOOK_SECONDS:
            self._look_up_long_items()
        for item in items:
            item["item_id"] = self._originals.get(item["item_id"], item["item_id"])
        return items

    def _look_up_long_items(self) -> None:
        self._looked_at = time.monotonic()
        long_ids = (
            scan_table(self.lake_dir, "interactions", INTERACTIONS_SCHEMA)
            .select(pl.col("item_id").unique())
            .filter(pl.col("item_id").str.len_chars() > MAX_ID)
            .collect()["item_id"]
        )
        self._originals = {digest: original for original, digest in digests(long_ids.to_list()).items()}

    def get_recommendations(self, user_id: str, num_results: int = 20) -> list[dict]:
        self.settings.require("campaign_arn")
        return self._ask(recommendations_request(self.settings.campaign_arn, fit_id(str(user_id)), num_results, self.settings.filter_arn))

    def get_similar_items(self, item_id: str, num_results: int = 20) -> list[dict]:
        self.settings.require("sims_campaign_arn")
        return self._ask({"campaignArn": self.settings.sims_campaign_arn, "itemId": fit_id(str(item_id)), "numResults": num_results})
