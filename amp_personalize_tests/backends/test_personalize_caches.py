"""The caches filled from Personalize through the real assets: GetRecommendations with the
exclusion filter under bounded concurrency, batch inference past the threshold, SIMS."""

import time

import dagster as dg
import orjson
import polars as pl
from botocore.stub import ANY, Stubber

from amp_personalize.assets.recommender import recommendations, similar_items
from amp_personalize.backends.personalize import recommend as recommend_module
from amp_personalize.backends.personalize.backend import CATALOG, COLD_USER
from amp_personalize.backends.personalize.push import RateLimiter
from amp_personalize.backends.versions import publish_latest, write_meta
from amp_personalize.lake.parquet import partition_path
from amp_personalize.resources import AmpResource
from amp_personalize_tests.backends.personalize_fakes import (
    CAMPAIGN,
    FILTER,
    ROLE,
    SIMS,
    SOLUTION,
    Service,
    clients_with_bucket,
    fake_resource,
    make_clients,
    write_history,
)

VERSION_ARN = f"{SOLUTION}/version-7"


def trained_version(data_dir) -> None:
    """What a Personalize training leaves under data/models/ (see test_personalize_training)."""
    models = data_dir / "models"
    directory = models / "20260101T000000Z-abcdef"
    directory.mkdir(parents=True)
    pl.DataFrame({"item_id": [f"i{k}" for k in range(50)]}).write_parquet(directory / CATALOG)
    write_meta(directory, {"version": directory.name, "backend": "personalize", "metrics": {}, "info": {"solution_version_arn": VERSION_ARN}})
    publish_latest(models, directory.name)


def answer_user(params: dict) -> dict:
    base = 100 if params["userId"] == COLD_USER else int(params["userId"][1:])
    return {"itemList": [{"itemId": f"i{(base + k) % 50}", "score": 1.0 / (k + 1)} for k in range(params["numResults"])], "recommendationId": "r1"}


def run(assets, data_dir, clients, **settings):
    resources = {"amp": AmpResource(data_dir=str(data_dir), backend="personalize", num_results=5),
                 "personalize": fake_resource(clients, key=str(data_dir), **settings)}
    return dg.materialize(assets, resources=resources, raise_on_error=False)


def test_recommendations_call_get_recommendations_per_active_user_with_the_filter_under_the_limit(tmp_path):
    write_history(tmp_path, users=30, per_user=3)
    trained_version(tmp_path)
    clients = make_clients()
    service = Service(clients.runtime, "GetRecommendations", answer_user, latency=0.02)
    result = run([recommendations], tmp_path, clients, recommend_concurrency=4, recommend_tps=1000)
    assert result.success
    users = [r["userId"] for r in service.requests]
    assert sorted(u for u in users if u != COLD_USER) == sorted(f"u{u}" for u in range(30))
    assert all(r["filterArn"] == FILTER and r["campaignArn"] == CAMPAIGN and r["numResults"] == 5 for r in service.requests if r["userId"] != COLD_USER)
    assert 1 < service.max_in_flight <= 4  # concurrent, and never past the bound
    cache = pl.read_parquet(partition_path(tmp_path / "lake", "recommendations"))
    assert cache.filter(pl.col("user_id") == "u3").sort("rank")["item_id"].to_list() == ["i3", "i4", "i5", "i6", "i7"]
    assert set(cache["source"]) == {"personalize"}
    popular = pl.read_parquet(partition_path(tmp_path / "lake", "popular_items"))
    assert popular["item_id"].to_list() == [f"i{k}" for k in range(0, 5)]  # what it tells a newcomer
    assert popular["source"].unique().to_list() == ["popular"]


def test_the_rate_limit_holds_the_configured_tps(tmp_path, monkeypatch):
    write_history(tmp_path, users=30, per_user=3)
    trained_version(tmp_path)
    clients = make_clients()
    service = Service(clients.runtime, "GetRecommendations", answer_user)
    starts: list[float] = []

    class Watched(RateLimiter):  # the real limiter, noting when it starts handing out slots
        def __init__(self, *args, **kwargs) -> None:
            starts.append(time.time())
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(recommend_module, "RateLimiter", Watched)
    assert run([recommendations], tmp_path, clients, recommend_concurrency=8, recommend_tps=20).success
    # The users' calls, under the first limiter (popular_items then asks for the cold-start user under its own).
    times = sorted(t for t, params in zip(service.times, service.requests) if params["userId"] != COLD_USER)
    # The limiter hands out one slot every 1/20 s from its start, and a call goes out at its slot
    # or, on a busy machine, later: the i-th call can never be earlier than i/20 s after the start
    # (a burst, or no limit at all, breaks this; delays cannot).
    started = starts[0]
    assert len(times) > 20
    assert all(t >= started + i / 20 for i, t in enumerate(times))


def test_past_the_threshold_one_batch_inference_job_fills_the_cache(tmp_path):
    write_history(tmp_path, users=30, per_user=3)
    trained_version(tmp_path)
    with clients_with_bucket() as (s3, clients):
        Service(clients.runtime, "GetRecommendations", answer_user)  # the cold-start list only
        jobs = {}

        def remember_paths(params, **_):
            jobs.update(input=params["jobInput"]["s3DataSource"]["path"], output=params["jobOutput"]["s3DataDestination"]["path"])

        def write_output(**_):
            """What Personalize does while the job runs: read the input, write the output."""
            if "input" not in jobs or jobs.get("written"):
                return
            bucket, _, key = jobs["input"].removeprefix("s3://").partition("/")
            users = [orjson.loads(line)["userId"] for line in s3.get_object(Bucket=bucket, Key=key)["Body"].read().splitlines()]
            lines = [{"input": {"userId": u}, "output": {"recommendedItems": [f"i{(int(u[1:]) + k) % 50}" for k in range(5)],
                                                         "scores": [0.5] * 5}, "error": None} for u in users]
            lines.append({"input": {"userId": "ghost"}, "output": None, "error": "user not found"})
            _, _, out_prefix = jobs["output"].removeprefix("s3://").partition("/")
            s3.put_object(Bucket=bucket, Key=out_prefix + "input.json.out", Body=b"\n".join(orjson.dumps(x) for x in lines))
            jobs["written"] = True

        clients.personalize.meta.events.register("before-parameter-build.personalize.CreateBatchInferenceJob", remember_paths)
        clients.personalize.meta.events.register("before-parameter-build.personalize.DescribeBatchInferenceJob", write_output)
        with Stubber(clients.personalize) as stub:
            stub.add_response(
                "create_batch_inference_job", {"batchInferenceJobArn": "arn:aws:personalize:us-east-1:1:batch-inference-job/b1"},
                {"jobName": ANY, "solutionVersionArn": VERSION_ARN, "numResults": 5, "filterArn": FILTER, "roleArn": ROLE,
                 "jobInput": ANY, "jobOutput": ANY},
            )
            for status in ("CREATE PENDING", "CREATE IN_PROGRESS", "ACTIVE"):
                stub.add_response("describe_batch_inference_job", {"batchInferenceJob": {"status": status}})
            result = run([recommendations], tmp_path, clients, batch_users=10)
            stub.assert_no_pending_responses()
    assert result.success
    cache = pl.read_parquet(partition_path(tmp_path / "lake", "recommendations"))
    assert cache["user_id"].n_unique() == 30 and "ghost" not in cache["user_id"].to_list()
    assert cache.filter(pl.col("user_id") == "u3").sort("rank")["item_id"].to_list() == ["i3", "i4", "i5", "i6", "i7"]


def test_similar_items_come_from_the_sims_campaign(tmp_path):
    write_history(tmp_path, users=30, per_user=3)
    trained_version(tmp_path)
    clients = make_clients()

    def answer_item(params):
        k = int(params["itemId"][1:])
        return {"itemList": [{"itemId": f"i{(k + d) % 50}", "score": 0.9 - d / 100} for d in range(1, params["numResults"] + 1)]}

    service = Service(clients.runtime, "GetRecommendations", answer_item)
    result = run([similar_items], tmp_path, clients, sims_campaign_arn=SIMS)
    assert result.success
    assert {r["campaignArn"] for r in service.requests} == {SIMS}
    assert len(service.requests) == 50  # one call per catalog item
    similar = pl.read_parquet(partition_path(tmp_path / "lake", "similar_items"))
    assert similar.filter(pl.col("item_id") == "i7").sort("rank")["similar_item_id"].head(3).to_list() == ["i8", "i9", "i10"]


def test_the_seeds_calls_answer_live_from_the_campaigns():
    from amp_personalize.backends.personalize.ids import fit_id
    from amp_personalize.backends.personalize.service import PersonalizeService
    from amp_personalize.settings import PersonalizeSettings

    clients = make_clients()

    def answer(params):
        key = params.get("userId") or params["itemId"]
        return {"itemList": [{"itemId": f"{key}-rec{k}", "score": 0.5} for k in range(params["numResults"])]}

    service = Service(clients.runtime, "GetRecommendations", answer)
    seed = PersonalizeService(PersonalizeSettings(campaign_arn=CAMPAIGN, sims_campaign_arn=SIMS, filter_arn=FILTER), clients)
    assert [r["item_id"] for r in seed.get_recommendations(user_id="12345")] == [f"12345-rec{k}" for k in range(20)]
    assert len(seed.get_similar_items("doc_1", num_results=3)) == 3
    assert service.requests[0] == {"campaignArn": CAMPAIGN, "userId": "12345", "numResults": 20, "filterArn": FILTER}
    assert service.requests[1] == {"campaignArn": SIMS, "itemId": "doc_1", "numResults": 3}
    # An id past Personalize's 256 characters is asked for under the digest the push and import use.
    long_user = "u" * 300
    assert len(seed.get_recommendations(user_id=long_user, num_results=2)) == 2
    assert service.requests[2]["userId"] == fit_id(long_user)


def test_the_seeds_calls_name_a_long_item_id_not_its_digest(tmp_path, caplog):
    from amp_personalize.backends.personalize.ids import fit_id
    from amp_personalize.backends.personalize.service import PersonalizeService
    from amp_personalize.settings import PersonalizeSettings

    long_item = "https://example.com/articles/" + "a" * 300
    unknown = fit_id("z" * 300)  # an item the model was not trained on stays what Personalize said
    clients = make_clients()
    Service(clients.runtime, "GetRecommendations", lambda params: {"itemList": [
        {"itemId": fit_id(long_item), "score": 0.9}, {"itemId": "short"}, {"itemId": unknown}, {"itemId": "sha256:not-a-digest"}]})
    seed = PersonalizeService(PersonalizeSettings(campaign_arn=CAMPAIGN, sims_campaign_arn=SIMS), clients, models_dir=tmp_path / "models")
    # No model yet: Personalize's answer as it came, and one warning saying why.
    assert [r["item_id"] for r in seed.get_recommendations("u1")] == [fit_id(long_item), "short", unknown, "sha256:not-a-digest"]
    assert [r["item_id"] for r in seed.get_similar_items("d1")][0] == fit_id(long_item)
    assert [r.message for r in caplog.records].count(
        f"Personalize answered with digests of long item ids that cannot be mapped back: no trained model under {tmp_path / 'models'}") == 1
    model = tmp_path / "models" / "v1"
    model.mkdir(parents=True)
    pl.DataFrame({"item_id": [long_item, "short"]}).write_parquet(model / CATALOG)
    publish_latest(tmp_path / "models", "v1")
    assert [r["item_id"] for r in seed.get_recommendations("u1")] == [long_item, "short", unknown, "sha256:not-a-digest"]
    assert [r["item_id"] for r in seed.get_similar_items(long_item)][0] == long_item

    # An app's own id that only starts like a digest sends nobody to the model catalog.
    own = make_clients()
    Service(own.runtime, "GetRecommendations", lambda params: {"itemList": [{"itemId": "sha256:not-a-digest"}]})
    caplog.clear()
    plain = PersonalizeService(PersonalizeSettings(campaign_arn=CAMPAIGN), own, models_dir=tmp_path / "nowhere")
    assert [r["item_id"] for r in plain.get_recommendations("u1")] == ["sha256:not-a-digest"]
    assert not caplog.records


def test_clients_follow_the_sdks_own_configuration_and_put_events_never_retries_by_itself(monkeypatch):
    from amp_personalize.backends.personalize.clients import (
        make_clients as real_clients,
    )

    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "from-the-environment")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_ENDPOINT_URL_PERSONALIZE_EVENTS", "http://127.0.0.1:9911")
    clients = real_clients(None, push_concurrency=12)
    assert clients.events.meta.endpoint_url == "http://127.0.0.1:9911"
    assert clients.runtime.meta.endpoint_url == "https://personalize-runtime.eu-west-1.amazonaws.com"
    assert clients.personalize.meta.region_name == "eu-west-1"
    assert clients.events._request_signer._credentials.access_key == "from-the-environment"
    assert clients.events.meta.config.retries["total_max_attempts"] == 1  # the push retries, behind the ledger
    assert clients.events.meta.config.max_pool_connections == 12


def test_without_a_sims_campaign_similar_items_is_empty_and_the_run_still_succeeds(tmp_path):
    write_history(tmp_path, users=30, per_user=3)
    trained_version(tmp_path)
    clients = make_clients()
    service = Service(clients.runtime, "GetRecommendations", answer_user)
    result = run([similar_items], tmp_path, clients)  # no sims_campaign_arn
    assert result.success and service.requests == []
    assert all(e.passed for e in result.get_asset_check_evaluations())
    assert pl.read_parquet(partition_path(tmp_path / "lake", "similar_items")).height == 0
