"""SciplatSpawner with the local backend, driven through a real hub, proxy and labs."""

from __future__ import annotations

import json
import os
import pwd
import re
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest
from hubharness import Harness, KernelError, xsrf

pytestmark = pytest.mark.integration
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (Unix accounts, cgroups)")


def test_spawn_with_options_runs_code_with_discovery_and_scoped_token(hub: Harness, running):
    r = hub.spawn("alice", {"image": "w2026_47", "size": "tiny"})
    assert r.status_code in (201, 202), r.text
    running.append(("alice", ""))
    hub.wait_ready("alice")
    model = hub.server_model("alice")
    assert model["ready"] and model["user_options"] == {"image": "w2026_47", "size": "tiny"}

    out = hub.run_code(
        "alice",
        """
import json, os, sciplat, httpx
d = sciplat.discovery()
print(json.dumps({
    "hub_url": d.hub_url, "tap": d.url("tap"), "discovery": os.environ["SCIPLAT_DISCOVERY"],
    "mode": oct(os.stat(os.environ["SCIPLAT_DISCOVERY"]).st_mode & 0o777),
    "image": os.environ["SCIPLAT_IMAGE"], "size": os.environ["SCIPLAT_SIZE"],
    "mem": os.environ["MEM_LIMIT"], "uid": os.getuid(), "home": os.environ["HOME"],
    "cpu": os.environ["CPU_LIMIT"],
    "kernel": os.environ.get("SCIPLAT_KERNEL"),
    "scopes": httpx.get(os.environ["JUPYTERHUB_API_URL"] + "/user",
                        headers={"Authorization": "token " + sciplat.client.token()}
                        ).json()["scopes"],
}))
""",
    )
    info = json.loads(out)
    assert info["hub_url"] == hub.platform.url
    assert info["tap"] == f"{hub.platform.url}/services/api/tap"
    assert info["discovery"] == f"{info['home']}/.sciplat/discovery.json"
    assert info["mode"] == "0o600"
    assert (info["image"], info["size"], info["mem"]) == ("w2026_47", "tiny", str(2**30))
    assert info["cpu"] == "1"  # a whole number: lsst.resources reads CPU_LIMIT with int()
    assert info["kernel"] == "lsst"  # the "LSST (sciplat)" kernel spec is the default
    # The lab's token holds exactly the data scopes of alice's group "users"...
    custom = sorted(s for s in info["scopes"] if s.startswith("custom:"))
    assert custom == ["custom:files:write", "custom:image:read", "custom:tap:read"]
    # ...and no admin rights.
    assert not any(s.startswith(("admin", "tokens", "list:users")) for s in info["scopes"])
    if os.geteuid() == 0:
        assert info["uid"] == pwd.getpwnam("alice").pw_uid
        assert info["home"] == str(hub.platform.settings.homes_dir / "alice")


def test_kernel_spec_is_registered(hub: Harness, running):
    hub.start("bob")
    running.append(("bob", ""))
    with hub.user_client("bob") as client:
        specs = client.get("/user/bob/api/kernelspecs").json()
    assert specs["default"] == "lsst"
    assert specs["kernelspecs"]["lsst"]["spec"]["display_name"] == "LSST (sciplat)"
    # The lab was forked from the image's zygote, without the language-server extension.
    run_dir = hub.platform.settings.run_dir
    forks = re.findall(
        r"Started lab bob as \S+ from the recommended zygote \(pid (\d+)\)",
        (run_dir / "hub.log").read_text(),
    )
    assert forks, "bob's lab was not forked from the zygote"
    zygote = psutil.Process(int(forks[-1])).parent()
    assert "sciplat.hub.zygote" in " ".join(zygote.cmdline())
    lab_log = (run_dir / "labs" / "bob.log").read_text()
    assert "jupyterlab | extension was successfully loaded" in lab_log
    assert "jupyter_lsp" not in lab_log


@root_only
def test_users_cannot_read_each_others_homes(hub: Harness, running):
    hub.start("alice", {"size": "tiny"})
    hub.start("bob", {"size": "tiny"})
    running.extend([("alice", ""), ("bob", "")])
    hub.run_code("bob", "open('secret.txt', 'w').write('bob only')")
    bob_home = hub.platform.settings.homes_dir / "bob"
    with pytest.raises(KernelError) as info:
        hub.run_code("alice", f"print(open({str(bob_home / 'secret.txt')!r}).read())")
    assert info.value.ename == "PermissionError"
    with pytest.raises(KernelError) as info:
        hub.run_code("alice", f"import os; print(os.listdir({str(bob_home)!r}))")
    assert info.value.ename == "PermissionError"
    # alice's token does not open bob's lab either.
    with hub.user_client("alice") as client:
        r = client.get("/user/bob/api/status", follow_redirects=False)
    assert r.status_code in (302, 403)


@root_only
def test_memory_limit_kills_the_kernel_not_the_lab(hub: Harness, running):
    hub.start("alice", {"size": "tiny"})
    running.append(("alice", ""))
    limit = Path("/sys/fs/cgroup/memory/sciplat/alice/memory.limit_in_bytes").read_text()
    assert int(limit) == 2**30
    with pytest.raises(KernelError) as info:
        hub.run_code(
            "alice", "x = bytearray(1536 * 2**20); x[::4096] = b'1' * len(x[::4096])", timeout=60
        )
    assert info.value.ename == "KernelDied"
    with hub.user_client("alice") as client:
        assert client.get("/user/alice/api/status").status_code == 200
    assert hub.run_code("alice", "print(6 * 7)").strip() == "42"


def test_forged_options_are_refused_without_a_spawn(hub: Harness):
    cases = [
        ("alice", {"size": "large"}, "above your quota"),
        ("alice", {"size": "gigantic"}, "Unknown size 'gigantic'"),
        ("alice", {"image": "../../bin/sh"}, "Unknown image"),
        ("carol", {"size": "small"}, "above your quota"),
        ("alice", {"cmd": ["/bin/sh"]}, "Unknown spawn option"),
    ]
    for user, options, message in cases:
        r = hub.spawn(user, options)
        assert r.status_code == 400, (options, r.status_code, r.text)
        assert message in r.json()["message"], r.text
        assert hub.server_model(user) is None
    with hub.api() as api:
        assert api.get("/").status_code == 200


def test_staff_may_take_the_large_size(hub: Harness, running):
    hub.start("dave", {"size": "large"})
    running.append(("dave", ""))
    assert hub.server_model("dave")["user_options"]["size"] == "large"


def test_spawn_form_lists_allowed_sizes_and_refuses_forged_post(hub: Harness):
    # The first admin logs in with the generated password and opens alice's spawn page: the
    # form is alice's (her groups' sizes), and a forged POST is refused on the page.
    browser = hub.admin_browser()
    try:
        page = browser.get("/hub/spawn/alice")
        assert page.status_code == 200
        assert 'name="size"' in page.text and 'value="small"' in page.text
        assert 'value="large"' not in page.text
        assert '<optgroup label="Weekly builds">' in page.text
        forged = browser.post(
            "/hub/spawn/alice", data={"image": "recommended", "size": "large", "_xsrf": xsrf(page)}
        )
    finally:
        browser.close()
    assert forged.status_code == 400
    error = re.search(r'class="spawn-error-msg[^"]*">(.*?)</p>', forged.text, re.S)
    assert error and "above your quota" in error.group(1), forged.text[-3000:]
    assert hub.server_model("alice") is None


def test_broken_image_fails_with_its_real_error_and_the_hub_stays_healthy(hub: Harness, running):
    r = hub.spawn("bob", {"image": "broken"})
    if r.status_code == 202:  # slower than slow_spawn_timeout: read the progress stream
        events = hub.progress_events("bob")
        message = events[-1]["message"]
        assert events[-1].get("failed")
    else:
        message = r.json()["message"]
        assert r.status_code == 502, r.text
    assert "exited during start-up" in message
    assert "No module named" in message  # the lab's own stderr, not a timeout
    with hub.api() as api:
        assert api.get("/").status_code == 200
        assert api.get("/users/bob").json()["servers"] == {}
    progress = hub.progress_events("bob")
    assert progress[-1]["failed"] and "No module named" in progress[-1]["message"]
    # The hub still spawns good images.
    hub.start("bob", {"image": "recommended"})
    running.append(("bob", ""))


def test_progress_events_describe_the_spawn(hub: Harness, running):
    spawn = threading.Thread(target=hub.spawn, args=("alice", {"size": "tiny"}))
    spawn.start()
    running.append(("alice", ""))
    events: list[dict] = []
    deadline = time.monotonic() + 60
    while not events and time.monotonic() < deadline:
        model = hub.server_model("alice")
        if model and model.get("pending") == "spawn":
            events = hub.progress_events("alice")  # streams until the spawn is done
        else:
            time.sleep(0.05)
    spawn.join()
    messages = [event.get("message", "") for event in events]
    assert any("Preparing your account" in m for m in messages), messages
    assert any("Starting JupyterLab from image 'recommended'" in m for m in messages), messages
    assert events[-1].get("ready"), events[-1]
    progress = [event["progress"] for event in events if "progress" in event]
    assert progress == sorted(progress)


def test_reset_user_environment_moves_dot_directories_aside(hub: Harness, running):
    hub.start("alice", {"size": "tiny"})
    hub.run_code(
        "alice",
        "import os; os.makedirs('.local/bad', exist_ok=True); "
        "open('.local/bad/x.pth', 'w').write('broken')",
    )
    hub.stop("alice")
    hub.start("alice", {"size": "tiny", "reset": True})
    running.append(("alice", ""))
    out = hub.run_code(
        "alice",
        """
import glob, os
moved = sorted(glob.glob('.sciplat-reset-*/.local/bad/x.pth'))
print(len(moved), os.path.exists('.local/bad'), open(moved[-1]).read())
""",
    )
    count, still_there, content = out.split()
    assert int(count) >= 1 and still_there == "False" and content == "broken"


def test_named_servers_remember_options_and_respect_the_limit(hub: Harness, running):
    hub.start("alice", {"image": "w2026_47", "size": "small"}, server="analysis")
    running.append(("alice", "analysis"))
    refused = hub.spawn("alice", {}, server="second")  # users may have 1 named server
    assert refused.status_code == 400, refused.text
    assert "named server" in refused.text.lower()
    hub.stop("alice", "analysis")
    hub.start("alice", None, server="analysis")  # no options: the remembered ones
    out = hub.run_code(
        "alice",
        "import os; print(os.environ['SCIPLAT_IMAGE'], os.environ['SCIPLAT_SIZE'])",
        server="analysis",
    )
    assert out.split() == ["w2026_47", "small"]


def test_hub_restart_keeps_labs_and_files(hub: Harness, running):
    hub.start("bob", {"size": "tiny"})
    running.append(("bob", ""))
    hub.run_code("bob", "open('before-restart.txt', 'w').write('still here')")
    pid_before = hub.platform.hub.pid()
    hub.platform.restart_hub()
    assert hub.platform.hub.pid() != pid_before
    with hub.user_client("bob") as client:
        assert client.get("/user/bob/api/status").status_code == 200
    assert hub.run_code("bob", "print(open('before-restart.txt').read())").strip() == "still here"
    assert hub.server_model("bob")["ready"]


def test_lab_serves_through_the_proxy_only_with_the_right_token(hub: Harness, running):
    hub.start("bob", {"size": "tiny"})
    running.append(("bob", ""))
    anonymous = httpx.get(f"{hub.url}/user/bob/api/status", follow_redirects=False)
    assert anonymous.status_code in (302, 403)
    assert re.search(r"/hub/(login|api/oauth2)", anonymous.headers.get("location", "/hub/login"))
