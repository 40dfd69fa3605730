"""The seed's PersonalizeService calls, kept for apps that ask Personalize directly.

Most apps read the cache (`GET /recommendations/{user_id}` or the lake), which costs no API
call; these answer live from the campaign, with the exclusion filter, as the seed's view did. An id
past 256 characters is asked for under the digest every other path uses (see `ids`), and an
answer naming a digest is mapped back to the item id, as the caches do: from the items the latest
model was trained on (under AMP_DATA_DIR/models, read only when a digest comes back).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from amp_personalize.backends.model_store import ModelStore
from amp_personalize.backends.personalize.clients import Clients, make_clients
from amp_personalize.backends.personalize.ids import (
    DIGEST_PREFIX,
    catalog_items,
    digests,
    fit_id,
)
from amp_personalize.backends.personalize.recommend import recommendations_request
from amp_personalize.backends.personalize.validation import validate
from amp_personalize.backends.versions import latest_version
from amp_personalize.settings import PersonalizeSettings, Settings

log = logging.getLogger(__name__)
_DIGEST = re.compile(re.escape(DIGEST_PREFIX) + "[0-9a-f]{64}")  # what fit_id makes, nothing else


class PersonalizeService:
    def __init__(self, settings: PersonalizeSettings | None = None, clients: Clients | None = None, models_dir: Path | None = None) -> None:
        self.settings = settings or Settings.from_env().personalize
        self.clients = clients or make_clients(None)
        self.models_dir = models_dir  # None: AMP_DATA_DIR's, looked up when first needed
        self._version: str | None = None
        self._originals: dict[str, str] = {}  # digest -> the long item id it stands for
        self._warned = False

    def _ask(self, params: dict) -> list[dict]:
        validate("personalize-runtime", "GetRecommendations", params)
        reply = self.clients.runtime.get_recommendations(**params)
        items = [{"item_id": i["itemId"], "score": i.get("score")} for i in reply.get("itemList", [])]
        if any(_DIGEST.fullmatch(item["item_id"]) for item in items):
            originals = self._long_items()
            for item in items:
                item["item_id"] = originals.get(item["item_id"], item["item_id"])
        return items

    def _long_items(self) -> dict[str, str]:
        """Digest -> long item id for the latest model; {} (and one warning) if it cannot be read:
        Personalize's answer is still worth returning."""
        try:
            if self.models_dir is None:  # AMP_DATA_DIR's, or fetched from AMP_LAKE_URL's models
                settings = Settings.from_env()
                models_dir, version = settings.models_dir, ModelStore(settings).pull_latest()
            else:
                models_dir, version = self.models_dir, latest_version(self.models_dir)
            if version is None:
                raise FileNotFoundError(f"no trained model under {models_dir}")
            if version != self._version:
                self._originals = {digest: original for original, digest in digests(catalog_items(models_dir / version)).items()}
                self._version = version
        except Exception as exc:  # noqa: BLE001 (any failure here only costs the mapping)
            if not self._warned:
                log.warning("Personalize answered with digests of long item ids that cannot be mapped back: %s", exc)
                self._warned = True
            return {}
        return self._originals

    def get_recommendations(self, user_id: str, num_results: int = 20) -> list[dict]:
        self.settings.require("campaign_arn")
        return self._ask(recommendations_request(self.settings.campaign_arn, fit_id(str(user_id)), num_results, self.settings.filter_arn))

    def get_similar_items(self, item_id: str, num_results: int = 20) -> list[dict]:
        self.settings.require("sims_campaign_arn")
        return self._ask({"campaignArn": self.settings.sims_campaign_arn, "itemId": fit_id(str(item_id)), "numResults": num_results})
