"""Where manifests come from: YAML text, a path, a folder, a dict, a list, ``kind: List``."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from labkit.errors import ModelError
from labkit.model.manifests import canonical_kind, load_documents, parse
from labkit.model.objects import Namespace, NetworkPolicy, Pod, Service

NS_YAML = """\
apiVersion: v1
kind: Namespace
metadata:
  name: x
"""
POD_YAML = """\
apiVersion: v1
kind: Pod
metadata:
  name: a
  namespace: x
spec:
  containers:
  - name: app
    ports:
    - containerPort: 80
"""
POLICY_YAML = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, namespace: x}
spec: {podSelector: {}}
"""
POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"}, "spec": {"containers": [{"name": "c"}]}}


def kinds(objects):
    return [type(o) for o in objects]


def test_multi_document_text():
    objs = parse("---\n" + NS_YAML + "---\n" + POD_YAML + "---\n---\n" + POLICY_YAML)
    assert kinds(objs) == [Namespace, Pod, NetworkPolicy]
    assert objs[1].ref == "x/a"


def test_text_without_namespace_means_default():
    assert parse(POD_YAML.replace("  namespace: x\n", ""))[0].ref == "default/a"


def test_empty_text_has_no_documents():
    assert parse("") == []
    assert parse("---\n# only a comment\n---\n") == []


def test_yaml_syntax_error_names_the_line():
    text = POD_YAML.replace("  namespace: x\n", "  namespace: x\n   bad: indent\n")
    with pytest.raises(ModelError, match=r"line 6\b"):   # the line of '   bad: indent'
        parse(text)


def test_yaml_error_in_a_later_document_counts_lines_from_the_top():
    text = NS_YAML + "---\n" + "kind: Pod\nmetadata: [a\n"   # line 7 opens a list that never closes
    with pytest.raises(ModelError, match=r"line (7|8)\b"):
        parse(text)


def test_yaml_tab_indentation_error_names_the_line():
    with pytest.raises(ModelError, match=r"line 2\b"):
        parse("kind: Pod\n\tmetadata: {}\n")


def test_path_as_str_and_pathlike(tmp_path):
    f = tmp_path / "world.yaml"
    f.write_text(NS_YAML + "---\n" + POD_YAML)
    assert kinds(parse(str(f))) == [Namespace, Pod]
    assert kinds(parse(f)) == [Namespace, Pod]


def test_folder_reads_yaml_yml_and_json_in_name_order(tmp_path):
    (tmp_path / "2-pod.yml").write_text(POD_YAML)
    (tmp_path / "1-ns.yaml").write_text(NS_YAML)
    (tmp_path / "3-policy.json").write_text(json.dumps(parse_dict(POLICY_YAML)))
    (tmp_path / "notes.txt").write_text("not: a manifest\n")
    assert kinds(parse(tmp_path)) == [Namespace, Pod, NetworkPolicy]
    assert kinds(parse(str(tmp_path))) == [Namespace, Pod, NetworkPolicy]


def parse_dict(text):
    import yaml
    return yaml.safe_load(text)


def test_missing_file_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        parse(str(tmp_path / "nope.yaml"))


def test_file_that_is_not_utf8_is_a_model_error(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_bytes(b"\xff\xfe" + "kind: Pod\n".encode("utf-16-le"))
    with pytest.raises(ModelError, match="bad.yaml"):
        parse(f)


def test_errors_in_a_file_name_the_document(tmp_path):
    f = tmp_path / "pod.yaml"
    f.write_text(POD_YAML.replace("containerPort: 80", "containerPort: 0"))
    with pytest.raises(ModelError) as exc:
        parse(f)
    assert str(exc.value).startswith("Pod x/a: spec.containers[0].ports[0].containerPort: ")


def test_dict_and_list_of_dicts():
    assert kinds(parse(POD)) == [Pod]
    assert kinds(parse([POD, dict(POD, metadata={"name": "b"})])) == [Pod, Pod]
    assert kinds(parse((d for d in [POD]))) == [Pod]


def test_kind_list_is_flattened():
    doc = {"apiVersion": "v1", "kind": "List", "items": [
        parse_dict(NS_YAML), {"kind": "List", "apiVersion": "v1", "items": [POD]}]}
    assert kinds(parse(doc)) == [Namespace, Pod]
    assert kinds(parse("apiVersion: v1\nkind: List\nitems: []\n")) == []


@pytest.mark.parametrize("items", [5, "abc", {"a": 1}])
def test_kind_list_items_must_be_a_list_of_objects(items):
    with pytest.raises(ModelError, match="List"):
        load_documents({"apiVersion": "v1", "kind": "List", "items": items})


@pytest.mark.parametrize("source", ["- 1\n- 2\n", "just a string\n", [POD, 5], [POD, ["a"]]])
def test_a_document_must_be_a_mapping(source):
    with pytest.raises(ModelError, match="not a Kubernetes object"):
        parse(source)


@pytest.mark.parametrize("source", [5, 3.5, object()])
def test_unreadable_source_types(source):
    with pytest.raises(ModelError, match="cannot read manifests"):
        parse(source)


def test_a_document_without_a_name_is_named_by_position():
    nameless = {"apiVersion": "v1", "kind": "Service", "metadata": {}, "spec": {"ports": [{"port": 80}]}}
    with pytest.raises(ModelError) as exc:
        parse([POD, nameless])
    assert str(exc.value) == "document 2 (Service): metadata.name: required field is missing"


def test_deeply_nested_yaml_is_a_model_error():
    with pytest.raises(ModelError, match="nested"):
        parse("a: " + "[" * 1200 + "]" * 1200 + "\n")


def test_overlong_single_line_source_is_a_model_error():
    # a one-line string without ':' is taken as a path; the OS refuses the name
    with pytest.raises(ModelError):
        parse("x" * 5000)


def test_service_documents_need_a_spec():
    with pytest.raises(ModelError) as exc:
        parse({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}})
    assert (exc.value.where, exc.value.path) == ("Service default/web", "spec")


def test_a_namespace_has_no_namespace_and_no_spec_fields():
    with pytest.raises(ModelError) as exc:
        parse({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}, "spec": {"foo": 1}})
    assert exc.value.path == "spec.foo"
    assert kinds(parse({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"},
                        "spec": {"finalizers": ["kubernetes"]}})) == [Namespace]


@pytest.mark.parametrize("alias, kind", [("netpol", "NetworkPolicy"), ("networkpolicies", "NetworkPolicy"),
                                         ("svc", "Service"), ("po", "Pod"), ("ns", "Namespace"),
                                         ("deploy", "Deployment"), ("Service", "Service")])
def test_kind_aliases_like_kubectl(alias, kind):
    assert canonical_kind(alias) == kind


def test_unknown_kind_alias():
    with pytest.raises(ModelError, match="unknown kind 'ingress'"):
        canonical_kind("ingress")


def test_json_text_is_yaml():
    assert kinds(parse(json.dumps(POD) + "\n")) == [Pod]
    assert isinstance(parse(json.dumps(parse_dict(POLICY_YAML)))[0], NetworkPolicy)


def test_files_are_read_as_given_not_relative_to_the_cwd(tmp_path, monkeypatch):
    (tmp_path / "svc.yaml").write_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 80}]}\n")
    monkeypatch.chdir(tmp_path)
    assert kinds(parse("svc.yaml")) == [Service]
    assert kinds(parse(Path("svc.yaml"))) == [Service]
