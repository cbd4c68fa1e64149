"""Isolation and safety: sessions stay apart, no user code runs, user names stay inside the workspace, the server
listens on localhost, and no server path reaches a message."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

from tests.upload_helpers import (
    assert_plain,
    dataset_zip,
    files_outside,
    good_files,
    page,
    problems,
    stored_names,
    upload_zip,
)
from tests.upload_helpers import workspace as workspace  # noqa: F401, PLC0414  (the fixture)

ROOT = Path(__file__).resolve().parents[1]


def _product_files() -> list[Path]:
    return [ROOT / "app.py", *sorted((ROOT / "pages").glob("*.py")), *sorted((ROOT / "unet").rglob("*.py"))]


# --- two sessions ---------------------------------------------------------------------------------------------------


def test_two_sessions_never_see_each_others_unsaved_uploads_or_widgets(workspace):  # noqa: F811
    images, masks = good_files()
    first = page("pages/dataset.py")
    second = page("pages/dataset.py")
    first.file_uploader[0].upload("private.zip", dataset_zip(images, masks), "application/zip").run()
    first.text_input(key="zip_name").set_value("only-mine").run()
    second.run()
    assert not first.exception and not second.exception
    assert first.text_input(key="zip_name").value == "only-mine"
    assert second.text_input(key="zip_name").value == ""
    assert not second.file_uploader[0].value, "the other session's upload must not appear here"
    assert "zip_name" in first.session_state and second.session_state["zip_name"] == ""
    assert stored_names(workspace) == [], "an unsaved upload is stored nowhere"

    next(b for b in first.button if b.key == "save_zip").click().run()
    second.run()
    assert stored_names(workspace) == ["only-mine"]
    assert first.session_state["dataset"] == "only-mine"
    assert "dataset" not in second.session_state, "saving in one tab does not choose the dataset in another"
    assert "dataset" not in second.query_params


def test_model_settings_of_one_session_stay_in_that_session(workspace):  # noqa: F811
    first, second = page("pages/model.py"), page("pages/model.py")
    first.slider(key="m_depth").set_value(2).run()
    second.run()
    assert first.session_state["config"].model.depth == 2
    assert second.session_state["config"].model.depth != 2


# --- no user code runs ----------------------------------------------------------------------------------------------

DANGEROUS_CALLS = {"eval", "exec", "compile", "__import__"}
DANGEROUS_ATTRIBUTES = {("pickle", "load"), ("pickle", "loads"), ("marshal", "loads"), ("dill", "load"),
                        ("cloudpickle", "load"), ("yaml", "unsafe_load"), ("os", "system"), ("os", "popen"),
                        ("config", "enable_unsafe_deserialization"), ("torch", "load")}


def _dangers(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if not isinstance(node, ast.Call):
            continue
        where = f"{path.relative_to(ROOT)}:{node.lineno}"
        func = node.func
        if isinstance(func, ast.Name) and func.id in DANGEROUS_CALLS:
            found.append(f"{where} calls {func.id}()")
        if isinstance(func, ast.Attribute):
            owner = func.value.attr if isinstance(func.value, ast.Attribute) else getattr(func.value, "id", "")
            if (owner, func.attr) in DANGEROUS_ATTRIBUTES:
                found.append(f"{where} calls {owner}.{func.attr}()")
            if func.attr == "load" and owner == "yaml" and not any(k.arg == "Loader" for k in node.keywords):
                found.append(f"{where} calls yaml.load without a safe Loader")
        for keyword in node.keywords:
            unsafe = {"safe_mode": False, "allow_pickle": True, "shell": True, "weights_only": False}
            if keyword.arg in unsafe and isinstance(keyword.value, ast.Constant):
                if keyword.value.value is unsafe[keyword.arg]:
                    found.append(f"{where} passes {keyword.arg}={keyword.value.value}")
            elif keyword.arg in unsafe:
                found.append(f"{where} passes {keyword.arg} a computed value; it must be a literal safe one")
    return found


def test_nothing_in_the_product_executes_user_supplied_code():
    files = _product_files()
    assert len(files) > 30
    found = [danger for path in files for danger in _dangers(path)]
    assert found == []


def test_every_model_load_in_the_product_keeps_safe_mode_on():
    loads = []
    for path in _product_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "load_model":
                keywords = {k.arg: k.value for k in node.keywords}
                assert isinstance(keywords.get("safe_mode"), ast.Constant) and keywords["safe_mode"].value is True, (
                    f"{path.relative_to(ROOT)}:{node.lineno} loads a model without an explicit safe_mode=True")
                loads.append(f"{path.name}:{node.lineno}")
    assert loads, "the checker found no load_model call at all; it has gone blind"


def test_the_checker_sees_what_it_looks_for(tmp_path):
    bad = ROOT / "unet" / "_isolation_probe.py"  # must sit inside ROOT for relative_to; removed at once
    bad.write_text("import pickle, keras\npickle.load(open('x', 'rb'))\neval('1')\n"
                   "keras.models.load_model('m.keras', safe_mode=False)\nimport subprocess\n"
                   "subprocess.run('ls', shell=True)\n")
    try:
        found = _dangers(bad)
    finally:
        bad.unlink()
    assert len(found) == 4, found


# --- user names become paths only sanitised --------------------------------------------------------------------------


USER_NAMES = [("../../etc", "etc"), ("con", "con_"), ("a/b", "a_b"), ("..", "untitled"), ("/etc/passwd", "etc_passwd"),
              ("名前", "untitled"), ("x" * 300, "x" * 64)]


@pytest.mark.parametrize(("name", "folder"), USER_NAMES)
def test_a_dataset_name_from_the_page_stays_inside_the_workspace(workspace, tmp_path, name, folder):  # noqa: F811
    images, masks = good_files()
    before = files_outside(tmp_path, workspace)
    at = upload_zip(dataset_zip(images, masks), "mine.zip", name)
    assert_plain(at, "4 pairs ready")
    assert stored_names(workspace) == [folder]
    assert files_outside(tmp_path, workspace) == before
    assert not Path("/etc/passwd.d").exists() and not (tmp_path.parent / "etc").exists()


def test_a_member_name_the_disk_cannot_hold_is_named_without_a_server_path(workspace):  # noqa: F811
    images, masks = good_files()
    long_name = "images/" + "a" * 300 + ".png"
    at = upload_zip(dataset_zip(images, masks, [(long_name, b"\x89PNG")]), "long.zip", "long")
    text = assert_plain(at, "4 pairs ready")
    assert "File name too long" in problems(at)[long_name], text


# --- the server ------------------------------------------------------------------------------------------------------


def test_the_server_listens_on_localhost_unless_told_otherwise():
    settings = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    assert settings["server"]["address"] in ("localhost", "127.0.0.1")
    assert settings["server"]["enableXsrfProtection"] is True
    assert settings["client"]["showErrorDetails"] in ("none", False), "tracebacks must not reach the browser"
    serve = (ROOT / "unet" / "ui" / "serve.py").read_text(encoding="utf-8")
    assert "server.address" not in serve and "0.0.0.0" not in serve
    assert "--server.address 0.0.0.0" in (ROOT / "README.md").read_text(encoding="utf-8"), "README says how to expose"


def test_a_session_cannot_reach_another_sessions_state_through_the_shared_caches():
    """`st.cache_resource` is shared by every session: it may hold facts about the machine, never a user's data."""
    uses = []
    for path in _product_files():
        text = path.read_text(encoding="utf-8")
        for number, line in enumerate(text.splitlines(), 1):
            if "st.cache_resource" in line and not line.lstrip().startswith(("#", '"')) and "`" not in line:
                uses.append(f"{path.relative_to(ROOT)}:{number}")
    allowed = {"unet/ui/model_facts_view.py"}  # machine_gflops(): this machine's speed
    assert {u.split(":")[0] for u in uses} <= allowed, uses


