"""`personalize setup`: creates only what the settings lack, waits for each, prints the exports."""

import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import pytest
from botocore.stub import ANY, Stubber
from click.testing import CliRunner, Result
from moto import mock_aws

from amp_personalize.backends.personalize.jobs import Poll
from amp_personalize.backends.personalize.setup import (
    INTERACTIONS_SCHEMA,
    RECIPE,
    setup,
)
from amp_personalize.backends.personalize.training import events_config
from amp_personalize.cli import main
from amp_personalize.events import load_weights
from amp_personalize.settings import PersonalizeSettings
from amp_personalize_tests.backends.personalize_fakes import (
    CAMPAIGN,
    DATASET,
    DATASET_GROUP,
    FILTER,
    SOLUTION,
    client,
    make_clients,
)

POLL = Poll(timeout_seconds=5, poll_seconds=0, sleep=lambda s: None)
SCHEMA = "arn:aws:personalize:us-east-1:123456789012:schema/amp-personalize-interactions"
TRACKER = "arn:aws:personalize:us-east-1:123456789012:event-tracker/amp"


def test_a_first_setup_creates_everything_but_the_campaign_and_a_second_creates_only_that():
    weights = load_weights()
    clients = make_clients()
    printed: list[str] = []
    with Stubber(clients.personalize) as stub:
        stub.add_response("create_dataset_group", {"datasetGroupArn": DATASET_GROUP}, {"name": "amp-personalize"})
        stub.add_response("describe_dataset_group", {"datasetGroup": {"status": "CREATE PENDING"}})
        stub.add_response("describe_dataset_group", {"datasetGroup": {"status": "ACTIVE"}})
        stub.add_response("create_schema", {"schemaArn": SCHEMA}, {"name": "amp-personalize-interactions", "schema": ANY})
        stub.add_response("create_dataset", {"datasetArn": DATASET},
                          {"name": "amp-personalize-interactions", "schemaArn": SCHEMA, "datasetGroupArn": DATASET_GROUP, "datasetType": "Interactions"})
        stub.add_response("describe_dataset", {"dataset": {"status": "ACTIVE"}})
        stub.add_response("create_event_tracker", {"eventTrackerArn": TRACKER, "trackingId": "tracking-9"},
                          {"name": "amp-personalize-events", "datasetGroupArn": DATASET_GROUP})
        stub.add_response("describe_event_tracker", {"eventTracker": {"status": "ACTIVE"}})
        stub.add_response("create_solution", {"solutionArn": SOLUTION}, {
            "name": "amp-personalize-user-personalization", "datasetGroupArn": DATASET_GROUP, "recipeArn": RECIPE,
            "performAutoTraining": False, "solutionConfig": {"eventsConfig": events_config(weights).config}})
        stub.add_response("describe_solution", {"solution": {"status": "ACTIVE"}})
        stub.add_response("create_filter", {"filterArn": FILTER}, {
            "name": "amp-personalize-exclude-negative", "datasetGroupArn": DATASET_GROUP,
            "filterExpression": 'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("downvote", "flag", "hide")'})
        stub.add_response("describe_filter", {"filter": {"status": "ACTIVE"}})
        stub.add_response("describe_solution", {"solution": {"status": "ACTIVE"}})  # no version yet: no campaign
        env = setup(clients, PersonalizeSettings(), weights, "amp-personalize", POLL, echo=printed.append)
        stub.assert_no_pending_responses()
    assert env == {
        "AWS_PERSONALIZE_DATASET_GROUP_ARN": DATASET_GROUP,
        "AWS_PERSONALIZE_INTERACTIONS_DATASET_ARN": DATASET,
        "AWS_PERSONALIZE_TRACKING_ID": "tracking-9",
        "AWS_PERSONALIZE_SOLUTION_ARN": SOLUTION,
        "AWS_PERSONALIZE_FILTER_ARN": FILTER,
    }
    assert "no campaign yet" in printed[-1]

    configured = PersonalizeSettings(dataset_group_arn=DATASET_GROUP, interactions_dataset_arn=DATASET, tracking_id="tracking-9",
                                     solution_arn=SOLUTION, filter_arn=FILTER)
    with Stubber(clients.personalize) as stub:
        version = f"{SOLUTION}/v1"
        stub.add_response("describe_solution", {"solution": {"status": "ACTIVE", "latestSolutionVersion": {"solutionVersionArn": version, "status": "ACTIVE"}}})
        stub.add_response("create_campaign", {"campaignArn": CAMPAIGN}, {"name": "amp-personalize", "solutionVersionArn": version, "minProvisionedTPS": 1})
        stub.add_response("describe_campaign", {"campaign": {"status": "CREATE IN_PROGRESS"}})
        stub.add_response("describe_campaign", {"campaign": {"status": "ACTIVE"}})
        env = setup(clients, configured, weights, "amp-personalize", POLL, echo=printed.append)
        stub.assert_no_pending_responses()
    assert env["AWS_PERSONALIZE_CAMPAIGN_ARN"] == CAMPAIGN and env["AWS_PERSONALIZE_TRACKING_ID"] == "tracking-9"


def test_the_interactions_schema_matches_the_import_csv_and_is_accepted():
    from amp_personalize.backends.personalize.bulk_import import CSV_COLUMNS

    assert [f["name"] for f in INTERACTIONS_SCHEMA["fields"]] == CSV_COLUMNS
    with mock_aws():  # moto covers Personalize schemas (and nothing else of Personalize)
        personalize = client("personalize")
        arn = personalize.create_schema(name="amp-interactions", schema=orjson.dumps(INTERACTIONS_SCHEMA).decode())["schemaArn"]
        stored = orjson.loads(personalize.describe_schema(schemaArn=arn)["schema"]["schema"])
    assert stored == INTERACTIONS_SCHEMA


@pytest.fixture
def bare_aws(monkeypatch, tmp_path):
    """An environment with no AWS region and no credentials anywhere the SDK looks."""
    for name in list(os.environ):
        if name.startswith("AWS_") or name.startswith("AMP_"):
            monkeypatch.delenv(name)
    empty = tmp_path / "empty"
    empty.write_text("")
    for name in ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "BOTO_CONFIG"):
        monkeypatch.setenv(name, str(empty))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance role: nothing leaves the machine
    monkeypatch.setenv("AMP_DATA_DIR", str(tmp_path / "data"))
    return monkeypatch


def run_setup() -> Result:
    return CliRunner().invoke(main, ["personalize", "setup"])


def assert_failed_cleanly(result: Result, *said: str) -> None:
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # click's own exit, not an escaped exception
    assert "Traceback" not in result.output
    assert result.output.startswith("Error: ")
    for text in said:
        assert text in result.output, result.output


def test_setup_without_a_region_says_so(bare_aws):
    assert_failed_cleanly(run_setup(), "NoRegionError", "You must specify a region")


def test_setup_without_credentials_says_so(bare_aws):
    bare_aws.setenv("AWS_DEFAULT_REGION", "us-east-1")
    assert_failed_cleanly(run_setup(), "NoCredentialsError", "Unable to locate credentials")


class AccessDenied(BaseHTTPRequestHandler):
    """Personalize's answer to a caller without the permission."""

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        body = orjson.dumps({"__type": "AccessDeniedException", "message": "User: arn:aws:iam::123456789012:user/ci is not authorized"})
        self.send_response(400)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_setup_refused_by_aws_names_the_error(bare_aws):
    server = ThreadingHTTPServer(("127.0.0.1", 0), AccessDenied)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        bare_aws.setenv("AWS_DEFAULT_REGION", "us-east-1")
        bare_aws.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
        bare_aws.setenv("AWS_SECRET_ACCESS_KEY", "not-a-real-secret")
        bare_aws.setenv("AWS_ENDPOINT_URL_PERSONALIZE", f"http://127.0.0.1:{server.server_port}")
        result = run_setup()
    finally:
        server.shutdown()
        server.server_close()
    assert_failed_cleanly(result, "AccessDeniedException", "CreateDatasetGroup", "is not authorized")
