"""The storage check's answers that need no Ray cluster: a cloud URI is not probed, a folder the
driver cannot create is refused with the fix. (Nodes that see another folder: test_cluster.py.)"""

from __future__ import annotations

import pytest

from ohem_tune.errors import ConfigError
from ohem_tune.orchestration.cluster import check_shared_storage, require_shared_storage


@pytest.mark.parametrize("uri", ["s3://bucket/ray_results", "gs://b/p", "abfs://c@acct/x"])
def test_a_cloud_uri_is_accepted_as_is(uri):
    check = require_shared_storage(uri)
    assert check.ok and check.storage == uri and check.nodes == ()
    assert "cloud URI" in check.detail


def test_a_folder_the_driver_cannot_create_is_refused_with_the_fix(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    storage = str(blocker / "results")
    check = check_shared_storage(storage)
    assert not check.ok and check.nodes == ()
    assert "the driver cannot write there" in check.detail
    with pytest.raises(ConfigError) as err:
        require_shared_storage(storage)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"--storage-path {storage}: ")
    assert "a filesystem every node mounts at the same path" in message and "cloud URI" in message


def test_run_refuses_an_address_where_nothing_listens_without_waiting_on_ray():
    """ray.init retries a dead address for minutes; connect_ray answers in one line at once."""
    import socket

    import ray

    from ohem_tune.orchestration.cluster import connect_ray

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ConfigError, match=f"--address 127.0.0.1:{port}: nothing answers there"):
        connect_ray(f"127.0.0.1:{port}", 0)
    assert not ray.is_initialized()
