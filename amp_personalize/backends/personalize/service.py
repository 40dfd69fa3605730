"""The seed's PersonalizeService calls, kept for apps that ask Personalize directly.

Most apps read the cache (`GET /recommendations/{user_id}` or the lake), which costs no API
call; these answer live from the campaign, with the exclusion filter, as the seed's view did. An id
past 256 characters is asked for under the digest every other path uses (see `ids`); an item
with such an id comes back as its digest (the caches map those back, these live calls do not).
"""

from __future__ import annotations

from amp_personalize.backends.personalize.clients import Clients, make_clients
from amp_personalize.backends.personalize.ids import fit_id
from amp_personalize.backends.personalize.recommend import recommendations_request
from amp_personalize.backends.personalize.validation import validate
from amp_personalize.settings import PersonalizeSettings, Settings


class PersonalizeService:
    def __init__(self, settings: PersonalizeSettings | None = None, clients: Clients | None = None) -> None:
        self.settings = settings or Settings.from_env().personalize
        self.clients = clients or make_clients(None)

    def _ask(self, params: dict) -> list[dict]:
        validate("personalize-runtime", "GetRecommendations", params)
        reply = self.clients.runtime.get_recommendations(**params)
        return [{"item_id": i["itemId"], "score": i.get("score")} for i in reply.get("itemList", [])]

    def get_recommendations(self, user_id: str, num_results: int = 20) -> list[dict]:
        self.settings.require("campaign_arn")
        return self._ask(recommendations_request(self.settings.campaign_arn, fit_id(str(user_id)), num_results, self.settings.filter_arn))

    def get_similar_items(self, item_id: str, num_results: int = 20) -> list[dict]:
        self.settings.require("sims_campaign_arn")
        return self._ask({"campaignArn": self.settings.sims_campaign_arn, "itemId": fit_id(str(item_id)), "numResults": num_results})
