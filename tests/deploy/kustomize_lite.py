"""A small kustomize renderer: just enough of kustomize for deploy/k8s, so the manifests can be
checked on a machine that has only the project's Python dependencies.

Supported, with kustomize's semantics: ``resources`` (files and directories), ``components``,
``namespace``, ``labels`` (without ``includeSelectors``), ``configMapGenerator`` (``files``,
``literals``, ``behavior``, kustomize's exact name hash), ``patches`` (strategic merge and
JSON 6902, ``path`` or inline, optional ``target`` by kind/name), ``replicas`` and ``images``.
Anything else in a kustomization is an error rather than silently ignored: extend this file or
stay within it. When a real ``kustomize`` or ``kubectl`` is on PATH, tests/deploy compares the
two renderings, so this file cannot drift from the real tool unnoticed.

Weak spots, on purpose: strategic merge patches merge lists of objects by their ``name`` key
(what containers, env, volumes and volumeMounts use) and replace every other list; name
references are fixed up only for ConfigMaps in pod specs.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SUPPORTED = {
    "apiVersion",
    "kind",
    "resources",
    "components",
    "namespace",
    "labels",
    "configMapGenerator",
    "patches",
    "replicas",
    "images",
}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}
POD_TEMPLATE_PATHS = {
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}


class KustomizeError(ValueError):
    pass


@dataclass
class Res:
    obj: dict[str, Any]
    generated: bool = False

    @property
    def kind(self) -> str:
        return str(self.obj["kind"])

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])


def render(directory: Path) -> list[dict[str, Any]]:
    """Build the kustomization in ``directory`` like ``kustomize build``."""
    resources = _build(directory.resolve(), [], component=False)
    _apply_name_hashes(resources)
    return [r.obj for r in resources]


def pod_template(obj: dict[str, Any]) -> dict[str, Any] | None:
    path = POD_TEMPLATE_PATHS.get(obj.get("kind", ""))
    if path is None:
        return None
    node: Any = obj
    for part in path:
        node = node[part]
    return node  # type: ignore[no-any-return]


# --- the build ------------------------------------------------------------------------------------
def _load_kustomization(directory: Path) -> dict[str, Any]:
    for name in ("kustomization.yaml", "kustomization.yml", "Kustomization"):
        path = directory / name
        if path.is_file():
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            unknown = set(data) - SUPPORTED
            if unknown:
                raise KustomizeError(f"{path}: unsupported by kustomize_lite: {sorted(unknown)}")
            return dict(data)
    raise KustomizeError(f"{directory}: no kustomization.yaml")


def _build(directory: Path, acc: list[Res], *, component: bool) -> list[Res]:
    k = _load_kustomization(directory)
    if (k.get("kind") == "Component") != component:
        raise KustomizeError(f"{directory}: kind {k.get('kind')!r} used as a {component=}")
    for entry in k.get("resources", []):
        path = directory / entry
        if path.is_dir():
            acc.extend(_build(path, [], component=False))
        else:
            docs = yaml.safe_load_all(path.read_text(encoding="utf-8"))
            acc.extend(Res(doc) for doc in docs if doc)
    for entry in k.get("components", []):
        _build(directory / entry, acc, component=True)
    for gen in k.get("configMapGenerator", []):
        _generate_config_map(directory, gen, acc)
    for patch in k.get("patches", []):
        _apply_patch(directory, patch, acc)
    if "namespace" in k:
        for r in acc:
            if r.kind not in CLUSTER_SCOPED:
                r.obj["metadata"]["namespace"] = k["namespace"]
    for entry in k.get("labels", []):
        _apply_labels(entry, acc)
    for entry in k.get("replicas", []):
        targets = [r for r in acc if r.name == entry["name"] and r.kind in POD_TEMPLATE_PATHS]
        if not targets:
            raise KustomizeError(f"replicas: no workload named {entry['name']}")
        for r in targets:
            r.obj["spec"]["replicas"] = entry["count"]
    for entry in k.get("images", []):
        for r in acc:
            _set_images(r.obj, entry)
    _check_unique(acc)
    return acc


def _check_unique(acc: list[Res]) -> None:
    seen: set[tuple[str, str, str]] = set()
    for r in acc:
        key = (r.kind, r.obj["metadata"].get("namespace", ""), r.name)
        if key in seen:
            raise KustomizeError(f"duplicate resource {key}")
        seen.add(key)


# --- generators -----------------------------------------------------------------------------------
def _generate_config_map(directory: Path, gen: dict[str, Any], acc: list[Res]) -> None:
    unknown = set(gen) - {"name", "files", "literals", "behavior"}
    if unknown:
        raise KustomizeError(f"configMapGenerator {gen.get('name')}: unsupported {unknown}")
    data: dict[str, str] = {}
    for entry in gen.get("files", []):
        key, _, file = entry.rpartition("=")
        data[key or Path(file).name] = (directory / file).read_text(encoding="utf-8")
    for entry in gen.get("literals", []):
        key, sep, value = entry.partition("=")
        if not sep:
            raise KustomizeError(f"literal {entry!r} has no '='")
        data[key] = value
    behavior = gen.get("behavior", "create")
    existing = [r for r in acc if r.generated and r.kind == "ConfigMap" and r.name == gen["name"]]
    if behavior == "create":
        if existing:
            raise KustomizeError(f"configMapGenerator {gen['name']} exists: use behavior merge")
        obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": gen["name"]}}
        acc.append(Res({**obj, "data": data}, generated=True))
    elif behavior in ("merge", "replace") and existing:
        base = existing[0].obj
        base["data"] = {**base.get("data", {}), **data} if behavior == "merge" else data
    else:
        raise KustomizeError(f"configMapGenerator {gen['name']}: cannot {behavior}")


def config_map_hash(data: dict[str, str]) -> str:
    """kustomize's name suffix (api/hasher): sha256 of Go's JSON of kind, name and data.

    kustomize looks the name up with a path that never matches, so it hashes an empty name.
    """
    encoded = json.dumps(
        {"data": data, "kind": "ConfigMap", "name": ""},
        separators=(",", ":"),
        sort_keys=True,
        ensure_ascii=False,
    )
    for char, escape in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e")):
        encoded = encoded.replace(char, escape)
    digest = hashlib.sha256(encoded.encode("utf-8")).hexdigest()[:10]
    return digest.translate(str.maketrans("013ae", "ghkmt"))


def _apply_name_hashes(acc: list[Res]) -> None:
    renames: dict[str, str] = {}
    for r in acc:
        if r.generated:
            new = f"{r.name}-{config_map_hash(r.obj.get('data', {}))}"
            renames[r.name] = new
            r.obj["metadata"]["name"] = new
    for r in acc:
        template = pod_template(r.obj)
        if template is None:
            continue
        spec = template["spec"]
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                ref = volume["configMap"]
                ref["name"] = renames.get(ref["name"], ref["name"])
        for container in spec.get("containers", []) + spec.get("initContainers", []):
            for source in container.get("envFrom", []):
                ref = source.get("configMapRef")
                if ref:
                    ref["name"] = renames.get(ref["name"], ref["name"])
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("configMapKeyRef")
                if ref:
                    ref["name"] = renames.get(ref["name"], ref["name"])


# --- transformers ---------------------------------------------------------------------------------
def _apply_patch(directory: Path, entry: dict[str, Any], acc: list[Res]) -> None:
    unknown = set(entry) - {"path", "patch", "target"}
    if unknown:
        raise KustomizeError(f"patch: unsupported {unknown}")
    text = (directory / entry["path"]).read_text(encoding="utf-8") if "path" in entry else None
    body = yaml.safe_load(text if text is not None else entry["patch"])
    target = entry.get("target")
    if target is None:
        if not isinstance(body, dict):
            raise KustomizeError("a JSON 6902 patch needs a target")
        target = {"kind": body["kind"], "name": body["metadata"]["name"]}
    if set(target) - {"kind", "name"}:
        raise KustomizeError(f"patch target: only kind and name are supported, got {target}")
    matched = [
        r
        for r in acc
        if all(r.obj["kind"] == v if k == "kind" else r.name == v for k, v in target.items())
    ]
    if not matched:
        raise KustomizeError(f"patch target {target} matches nothing")
    for r in matched:
        if isinstance(body, list):
            r.obj = _json6902(r.obj, body)
        else:
            r.obj = _strategic_merge(r.obj, body)


def _strategic_merge(base: Any, patch: Any) -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            if value is None:
                out.pop(key, None)
            elif key in out:
                out[key] = _strategic_merge(out[key], value)
            else:
                out[key] = copy.deepcopy(value)
        return out
    if (
        isinstance(base, list)
        and isinstance(patch, list)
        and all(isinstance(i, dict) and "name" in i for i in base + patch)
    ):
        out_list = [dict(i) for i in base]
        index = {item["name"]: n for n, item in enumerate(out_list)}
        for item in patch:
            if item["name"] in index:
                n = index[item["name"]]
                out_list[n] = _strategic_merge(out_list[n], item)
            else:
                out_list.append(copy.deepcopy(item))
        return out_list
    return copy.deepcopy(patch)


def _json6902(obj: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    for op in ops:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        parent: Any = obj
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent[part]
        last = parts[-1]
        kind = op["op"]
        if isinstance(parent, list):
            i = len(parent) if last == "-" else int(last)
            if kind == "add":
                parent.insert(i, op["value"])
            elif kind == "replace":
                parent[i] = op["value"]
            elif kind == "remove":
                del parent[i]
            else:
                raise KustomizeError(f"JSON 6902 op {kind} is not supported")
        elif kind in ("add", "replace"):
            if kind == "replace" and last not in parent:
                raise KustomizeError(f"replace: {op['path']} does not exist")
            parent[last] = op["value"]
        elif kind == "remove":
            del parent[last]
        else:
            raise KustomizeError(f"JSON 6902 op {kind} is not supported")
    return obj


def _apply_labels(entry: dict[str, Any], acc: list[Res]) -> None:
    if entry.get("includeSelectors"):
        raise KustomizeError("labels.includeSelectors is not supported")
    if set(entry) - {"pairs", "includeSelectors", "includeTemplates"}:
        raise KustomizeError(f"labels: unsupported {entry}")
    pairs = entry["pairs"]
    for r in acc:
        r.obj["metadata"].setdefault("labels", {}).update(pairs)
        if entry.get("includeTemplates"):
            for meta in _template_metadata(r.obj):
                meta.setdefault("labels", {}).update(pairs)


def _template_metadata(obj: dict[str, Any]) -> Iterator[dict[str, Any]]:
    kind = obj.get("kind")
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        yield obj["spec"]["template"].setdefault("metadata", {})
    elif kind == "CronJob":
        job = obj["spec"]["jobTemplate"]
        yield job.setdefault("metadata", {})
        yield job["spec"]["template"].setdefault("metadata", {})


def _set_images(obj: dict[str, Any], entry: dict[str, Any]) -> None:
    template = pod_template(obj)
    if template is None:
        return
    spec = template["spec"]
    for container in spec.get("containers", []) + spec.get("initContainers", []):
        image = container["image"]
        name = image.split("@")[0]
        if ":" in name.rsplit("/", 1)[-1]:
            name = name.rsplit(":", 1)[0]
        if name != entry["name"]:
            continue
        new = entry.get("newName", name)
        if "digest" in entry:
            new += "@" + entry["digest"]
        elif "newTag" in entry:
            new += ":" + str(entry["newTag"])
        elif image != name:
            new += image[len(name) :]
        container["image"] = new
