"""helix.kubeadm_aws.ecr_image_info against the local AWS endpoint: DescribeImages by tag, digests, missing tags."""

from __future__ import annotations

from ansible_collections.helix.kubeadm_aws.plugins.modules import ecr_image_info
from tests.aws_endpoint import REGION
from tests.ecr_records import put_image
from tests.module_runner import run_module


def info(capsys, aws, **args):
    return run_module(capsys, ecr_image_info, args, aws=aws)


def test_each_tag_gives_the_digest_of_its_image(capsys, aws):
    ecr = aws.client("ecr")
    ecr.create_repository(repositoryName="demo/api")
    first = put_image(ecr, "demo/api", "1.0", b"one")
    second = put_image(ecr, "demo/api", "1.1", b"two")

    result = info(capsys, aws, repository="demo/api", tags=["1.1", "1.0"])

    assert not result.get("failed"), result
    assert result["changed"] is False
    assert result["repository"] == "demo/api"
    assert [(image["tag"], image["image_digest"]) for image in result["images"]] == [("1.1", second), ("1.0", first)]
    assert result["images"][0]["image_tags"] == ["1.1"]
    assert result["missing_tags"] == []


def test_a_missing_tag_is_named_and_the_others_are_still_read(capsys, aws):
    ecr = aws.client("ecr")
    ecr.create_repository(repositoryName="demo/ui")
    digest = put_image(ecr, "demo/ui", "1.0", b"ui")

    result = info(capsys, aws, repository="demo/ui", tags=["2.0", "1.0"])

    assert not result.get("failed"), result
    assert result["missing_tags"] == ["2.0"]
    assert [image["image_digest"] for image in result["images"]] == [digest]


def test_a_tag_moved_to_another_image_gives_the_new_digest(capsys, aws):
    ecr = aws.client("ecr")
    ecr.create_repository(repositoryName="demo/db")
    put_image(ecr, "demo/db", "1.0", b"old")
    new = put_image(ecr, "demo/db", "1.0", b"new")

    result = info(capsys, aws, repository="demo/db", tags=["1.0"])

    assert [image["image_digest"] for image in result["images"]] == [new]


def test_without_tags_every_tagged_image_is_listed(capsys, aws):
    ecr = aws.client("ecr")
    ecr.create_repository(repositoryName="demo/api")
    digests = {put_image(ecr, "demo/api", tag, tag.encode()) for tag in ("a", "b", "c")}

    result = info(capsys, aws, repository="demo/api")

    assert not result.get("failed"), result
    assert {image["image_digest"] for image in result["images"]} == digests
    assert sorted(image["tag"] for image in result["images"]) == ["a", "b", "c"]
    assert result["missing_tags"] == []


def test_an_empty_repository_has_every_tag_missing(capsys, aws):
    aws.client("ecr").create_repository(repositoryName="demo/api")

    result = info(capsys, aws, repository="demo/api", tags=["1.0"])

    assert not result.get("failed"), result
    assert result["images"] == []
    assert result["missing_tags"] == ["1.0"]


def test_a_missing_repository_fails_naming_it(capsys, aws):
    result = info(capsys, aws, repository="demo/nothing", tags=["1.0"])

    assert result["failed"] is True
    assert result["msg"] == (
        f"ecr_image_info: ECR repository demo/nothing does not exist in {REGION}; the bootstrap layer makes it"
    )
