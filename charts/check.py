#!/usr/bin/env python3
"""`make chart-check`: the pdp chart and the k8s/ manifests, checked offline with the real Helm
engine (helm-python-sdk) and the Kubernetes JSON schemas (kubernetes-validate, strict).

For the default values and every example: the schema accepts them, lint finds no error, and every
rendered manifest validates against Kubernetes 1.31 and the newest schema shipped; TenantRoutes
validate against the CRD's own schema. Then properties every IT team relies on: no container runs
as root, every Deployment has probes and limits, every namespace with pods has a default-deny
NetworkPolicy, no secret value is inlined. Exits non-zero naming every failure.
"""

import pathlib
import re
import tomllib
import sys

import jsonschema
import kubernetes_validate
import yaml
from helm_python import Chart, HelmError, lint

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "pdp"
EXAMPLES = sorted((CHART / "examples").glob("*.yaml"))
K8S_VERSIONS = ["1.31.0", kubernetes_validate.latest_version()]
SECRET_ENV = {
    "PDP_STORE__URL",
    "PDP_IDENTITY__HMAC_KEY",
    "PDP_REDIS__URL",
    "PDP_EVENTS__PASSWORD",
    "PDP_SANDBOX__S3_ACCESS_KEY_ID",
    "PDP_SANDBOX__S3_SECRET_ACCESS_KEY",
}

failures = []


def fail(where, message):
    failures.append(f"{where}: {message}")


def crd_schema():
    crd = yaml.safe_load((ROOT / "k8s" / "crds" / "tenantroute.yaml").read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


TENANT_ROUTE = crd_schema()


# The parts of the Prometheus Operator's PodMonitor and PrometheusRule (monitoring.coreos.com/v1)
# the chart uses, with what the operator requires of them.
MONITORING = {
    "PodMonitor": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "spec": {
                "type": "object",
                "required": ["selector", "podMetricsEndpoints"],
                "additionalProperties": False,
                "properties": {
                    "selector": {"type": "object", "required": ["matchLabels"]},
                    "podMetricsEndpoints": {"type": "array", "minItems": 1, "items": {
                        "type": "object", "required": ["port", "path"],
                        "additionalProperties": False,
                        "properties": {"port": {"type": "string"}, "path": {"type": "string"},
                                       "interval": {"type": "string",
                                                    "pattern": "^[0-9]+(ms|s|m|h)$"}}}},
                },
            },
        },
    },
    "PrometheusRule": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "spec": {"type": "object", "required": ["groups"], "additionalProperties": False,
                     "properties": {"groups": {"type": "array", "minItems": 1, "items": {
                         "type": "object", "required": ["name", "rules"],
                         "additionalProperties": False,
                         "properties": {"name": {"type": "string"}, "rules": {
                             "type": "array", "minItems": 1, "items": {
                                 "type": "object", "required": ["alert", "expr"],
                                 "additionalProperties": False,
                                 "properties": {
                                     "alert": {"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9]*$"},
                                     "expr": {"type": "string", "minLength": 1},
                                     "for": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                                     "labels": {"type": "object"},
                                     "annotations": {"type": "object"}}}}}}}}},
        },
    },
}


def exported_metrics():
    """The metric families pdp exports, from their registrations."""
    text = (ROOT / "services" / "kit" / "src" / "telemetry" / "metrics.rs").read_text()
    return set(re.findall(r'"(pdp_[a-z0-9_]+)"', text))


def check_metric_names(where, text):
    """Every pdp_* series a rule or panel reads is one pdp exports (histograms by their parts)."""
    known = exported_metrics()
    for name in set(re.findall(r"\b(pdp_[a-z0-9_]+)", text)):
        family = re.sub(r"_(bucket|count|sum)$", "", name)
        if name not in known and family not in known:
            fail(where, f"reads {name}, which pdp does not export")


def validate(where, doc):
    """One manifest against Kubernetes (strict) or, for our kinds, the CRD's schema."""
    if doc.get("kind") in MONITORING:
        try:
            jsonschema.validate(doc, MONITORING[doc["kind"]])
        except jsonschema.ValidationError as e:
            fail(where, f"{doc['kind']}: {e.message}")
        return
    if doc.get("kind") == "TenantRoute":
        try:
            jsonschema.validate(doc, TENANT_ROUTE)
        except jsonschema.ValidationError as e:
            fail(where, f"TenantRoute: {e.message}")
        return
    for version in K8S_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as e:
            fail(where, f"Kubernetes {version}: {getattr(e, 'message', e)}")


def pod_spec(doc):
    kind = doc.get("kind")
    if kind in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
        return doc["spec"]["template"]["spec"]
    return None


def check_pods(where, doc):
    spec = pod_spec(doc)
    if spec is None:
        return
    name = f"{where} {doc['kind']}/{doc['metadata']['name']}"
    pod_ctx = spec.get("securityContext", {})
    for c in spec.get("containers", []) + spec.get("initContainers", []):
        ctx = {**pod_ctx, **c.get("securityContext", {})}
        if not ctx.get("runAsNonRoot") or ctx.get("runAsUser", 1) == 0:
            fail(name, f"container {c['name']} may run as root")
        if not c.get("securityContext", {}).get("readOnlyRootFilesystem"):
            fail(name, f"container {c['name']} has a writable root filesystem")
        if c.get("securityContext", {}).get("allowPrivilegeEscalation") is not False:
            fail(name, f"container {c['name']} may escalate privileges")
        if "ALL" not in c.get("securityContext", {}).get("capabilities", {}).get("drop", []):
            fail(name, f"container {c['name']} keeps capabilities")
        if ctx.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            fail(name, f"container {c['name']} has no RuntimeDefault seccomp profile")
        limits = c.get("resources", {}).get("limits", {})
        if not {"cpu", "memory"} <= limits.keys():
            fail(name, f"container {c['name']} has no cpu and memory limits")
        if doc["kind"] == "Deployment":
            for probe in ("livenessProbe", "readinessProbe"):
                if probe not in c:
                    fail(name, f"container {c['name']} has no {probe}")
        for env in c.get("env", []):
            if env["name"] in SECRET_ENV and "valueFrom" not in env:
                fail(name, f"{env['name']} is inlined instead of read from a Secret")


def check_release(where, docs, namespace):
    kinds = [d.get("kind") for d in docs]
    if "Secret" in kinds:
        fail(where, "the chart renders a Secret: secrets are referenced, never held")
    for d in docs:
        if d.get("kind") == "ConfigMap":
            text = yaml.safe_dump(d.get("data", {})).lower()
            for word in ("password", "hmac_key", "postgres://"):
                if word in text:
                    fail(where, f"ConfigMap {d['metadata']['name']} holds `{word}`")
    if any(pod_spec(d) for d in docs):
        deny = [
            d for d in docs
            if d.get("kind") == "NetworkPolicy"
            and d["spec"].get("podSelector") == {}
            and set(d["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
            and not d["spec"].get("ingress") and not d["spec"].get("egress")
        ]
        if not deny:
            fail(where, f"namespace {namespace} has pods but no default-deny NetworkPolicy")


def check_hooks_stand_alone(where, docs):
    """A hook runs before the release's ordinary resources exist: what its pods use (their
    ServiceAccount, ConfigMaps) must be hooks of the same phases with a lower weight, or the hook
    fails on an empty namespace."""
    def hook(doc):
        notes = doc.get("metadata", {}).get("annotations", {}) or {}
        phases = set(filter(None, notes.get("helm.sh/hook", "").split(",")))
        return phases, int(notes.get("helm.sh/hook-weight", "0"))

    by_name = {(d.get("kind"), d["metadata"]["name"]): d for d in docs if d.get("metadata")}
    for doc in docs:
        phases, weight = hook(doc)
        spec = pod_spec(doc)
        if not phases or not spec:
            continue
        used = [("ServiceAccount", spec.get("serviceAccountName", "default"))]
        used += [("ConfigMap", v["configMap"]["name"]) for v in spec.get("volumes", []) if "configMap" in v]
        for kind, name in used:
            dep = by_name.get((kind, name))
            if dep is None:
                if name != "default":
                    fail(where, f"hook {doc['metadata']['name']} uses {kind} {name}, which the chart does not render")
                continue
            dep_phases, dep_weight = hook(dep)
            if not phases <= dep_phases or dep_weight >= weight:
                fail(where, f"hook {doc['metadata']['name']} uses {kind} {name}, which is not a "
                            f"{','.join(sorted(phases))} hook of a lower weight: it would not exist yet")


def check_values(label, values, namespace):
    chart = Chart.load(CHART)
    try:
        chart.validate_schema(values)
    except HelmError as e:
        fail(label, f"schema refuses the values: {e}")
        return
    report = lint(str(CHART), values, strict=False, namespace=namespace, kube_version="v1.31.0")
    for m in report.get("messages", []):
        if m.get("severity", 0) >= 3:
            fail(label, f"lint: {m.get('path')}: {m.get('error')}")
    for e in report.get("errors", []) or []:
        fail(label, f"lint: {e}")
    for install, upgrade in ((True, False), (False, True)):
        manifests = chart.render(values, name=values_release(label), namespace=namespace,
                                 is_install=install, is_upgrade=upgrade, revision=1 if install else 2)
        docs = []
        for path, text in sorted(manifests.items()):
            if not path.endswith((".yaml", ".yml")):
                continue
            for doc in yaml.safe_load_all(text):
                if doc:
                    docs.append(doc)
                    validate(f"{label} {path}", doc)
                    check_pods(label, doc)
        check_release(label, docs, namespace)
        check_hooks_stand_alone(label, docs)
        if not docs:
            fail(label, "rendered nothing")


def check_holidays_reach_the_services():
    """A deployment's holiday file is rendered into the config map the services mount, and the
    configuration names it."""
    values = yaml.safe_load(EXAMPLES[-1].read_text())
    values["config"]["holidays"] = '[[year]]\nyear = 2027\ndays_off = []\nworking_days = []\n'
    label = "holidays in the provincial example"
    check_values(label, values, "pdp")
    manifests = Chart.load(CHART).render(values, name="pdp", namespace="pdp", is_install=True,
                                         is_upgrade=False, revision=1)
    maps = [d for text in manifests.values() for d in yaml.safe_load_all(text)
            if d and d.get("kind") == "ConfigMap" and d["metadata"]["name"] == "pdp-config"]
    if not maps or "year = 2027" not in maps[0]["data"].get("holidays.toml", ""):
        fail(label, "pdp-config carries no holidays.toml")
    elif 'holidays_file = "/etc/pdp/config/holidays.toml"' not in maps[0]["data"]["pdp.toml"]:
        fail(label, "the configuration does not name the holiday file")


def check_oversight_readme_example():
    """The README's oversight values render into a configuration that reads as TOML, with the
    supervisors' departments and the Harbin rule in place."""
    readme = (CHART / "README.md").read_text()
    section = readme.split("## Oversight", 1)[-1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    label = "the README's oversight example"
    if not block:
        fail(label, "charts/pdp/README.md shows no oversight values")
        return
    values = yaml.safe_load(EXAMPLES[-1].read_text())
    overlay = yaml.safe_load(block.group(1))["oversight"]
    values["oversight"] = {**values.get("oversight", {}), **overlay,
                           "expiringWithinDays": 60, "passMark": 60}
    check_values(label, values, "pdp")
    manifests = Chart.load(CHART).render(values, name="pdp", namespace="pdp", is_install=True,
                                         is_upgrade=False, revision=1)
    maps = [d for text in manifests.values() for d in yaml.safe_load_all(text)
            if d and d.get("kind") == "ConfigMap" and d["metadata"]["name"] == "pdp-config"]
    try:
        config = tomllib.loads(maps[0]["data"]["pdp.toml"])
    except (IndexError, tomllib.TOMLDecodeError) as e:
        fail(label, f"pdp.toml does not read: {e}")
        return
    oversight = config.get("oversight", {})
    rules = oversight.get("tenant_rules", {}).get("230100", [])
    if not rules or rules[0].get("threshold") != 3 or len(rules[0].get("conditions", [])) != 2:
        fail(label, f"the Harbin rule did not reach pdp.toml: {oversight}")
    if oversight.get("supervisor_departments", {}).get("harbin-cyberspace-office") != ["CYBERSPACE"]:
        fail(label, f"the supervisors' departments did not reach pdp.toml: {oversight}")


def check_monitoring():
    """With monitoring on, the PodMonitors, the PrometheusRule and the dashboard render and
    validate, and read only metrics pdp exports; off, none of them renders."""
    import json
    values = yaml.safe_load(EXAMPLES[-1].read_text())
    on = {"podMonitor": {"enabled": True, "interval": "30s", "labels": {"release": "kps"}},
          "prometheusRule": {"enabled": True, "labels": {}, "lagThreshold": 1000,
                             "errorRatio": 0.05},
          "dashboard": {"enabled": True, "labels": {"grafana_dashboard": "1"}}}
    label = "monitoring on"
    values["monitoring"] = on
    check_values(label, values, "pdp")
    manifests = Chart.load(CHART).render(values, name="pdp", namespace="pdp", is_install=True,
                                         is_upgrade=False, revision=1)
    docs = [d for text in manifests.values() for d in yaml.safe_load_all(text) if d]
    kinds = [d["kind"] for d in docs]
    if kinds.count("PodMonitor") != 2 or kinds.count("PrometheusRule") != 1:
        fail(label, f"expected two PodMonitors and one PrometheusRule, got {kinds}")
    for d in docs:
        if d["kind"] == "PrometheusRule":
            check_metric_names(label, yaml.safe_dump(d))
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboard"):
            try:
                dashboard = json.loads(d["data"]["pdp.json"])
            except (KeyError, json.JSONDecodeError) as e:
                fail(label, f"the dashboard is no JSON: {e}")
                continue
            if not dashboard.get("panels"):
                fail(label, "the dashboard has no panels")
            check_metric_names(label, d["data"]["pdp.json"])
    if not any(d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboard")
               for d in docs):
        fail(label, "no dashboard ConfigMap")
    values["monitoring"] = {k: {**v, "enabled": False} for k, v in on.items()}
    manifests = Chart.load(CHART).render(values, name="pdp", namespace="pdp", is_install=True,
                                         is_upgrade=False, revision=1)
    off = [d["kind"] for text in manifests.values() for d in yaml.safe_load_all(text)
           if d and (d["kind"] in MONITORING or d["metadata"]["name"].endswith("-dashboard"))]
    if off:
        fail("monitoring off", f"still renders {off}")


def values_release(label):
    return "pdp-harbin" if "harbin" in label else "pdp"


def check_schema_bites():
    chart = Chart.load(CHART)
    for bad, why in (
        ({"gateway": {"replicas": "two"}}, "a wrong type"),
        ({"unknownKey": True}, "an unknown key"),
        ({"instance": {"mode": "county"}}, "an unknown instance mode"),
        ({"secrets": {"database": {"name": "", "key": "url"}}}, "a missing database Secret"),
    ):
        try:
            chart.validate_schema(bad)
            fail("values.schema.json", f"accepts {why}: {bad}")
        except HelmError:
            pass


def check_schema_describes_every_value():
    schema = __import__("json").loads((CHART / "values.schema.json").read_text())

    def walk(node, path):
        if not isinstance(node, dict):
            return
        if node.get("type") == "object" and "properties" in node and node.get("additionalProperties") is not False:
            fail("values.schema.json", f"{path or 'the root'} accepts unknown keys")
        for key, sub in node.get("properties", {}).items():
            if "description" not in sub:
                fail("values.schema.json", f"{path}.{key} has no description")
            walk(sub, f"{path}.{key}")
        for key, sub in node.get("$defs", {}).items():
            walk(sub, f"$defs.{key}")

    walk(schema, "")


def check_k8s_dir():
    for path in sorted((ROOT / "k8s").rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc:
                continue
            where = str(path.relative_to(ROOT))
            validate(where, doc)
            if doc.get("kind") == "Namespace":
                labels = doc["metadata"].get("labels", {})
                if labels.get("pod-security.kubernetes.io/enforce") != "restricted":
                    fail(where, f"namespace {doc['metadata']['name']} does not enforce `restricted`")
    if (CHART / "crds" / "tenantroute.yaml").read_text() != (ROOT / "k8s" / "crds" / "tenantroute.yaml").read_text():
        fail("charts/pdp/crds/tenantroute.yaml", "differs from k8s/crds/tenantroute.yaml (copy it over)")


def check_readme():
    readme = (CHART / "README.md").read_text()
    shown = {w for w in readme.split() if w.startswith("charts/pdp/examples/")}
    known = {str(p.relative_to(ROOT)) for p in EXAMPLES}
    for path in sorted(shown - known):
        fail("charts/pdp/README.md", f"shows {path}, which is not a checked example")
    if not shown:
        fail("charts/pdp/README.md", "shows no example values file")


def main():
    if len(EXAMPLES) < 2:
        fail("charts/pdp/examples", "expected the provincial and the Harbin examples")
    check_values("default values", None, "pdp")
    for example in EXAMPLES:
        values = yaml.safe_load(example.read_text())
        namespace = "pdp-harbin" if "harbin" in example.name else "pdp"
        check_values(str(example.relative_to(ROOT)), values, namespace)
    check_holidays_reach_the_services()
    check_oversight_readme_example()
    check_monitoring()
    check_schema_bites()
    check_schema_describes_every_value()
    check_k8s_dir()
    check_readme()
    if failures:
        print(f"chart-check: {len(failures)} failure(s)", file=sys.stderr)
        for f in failures:
            print(f"  - {f}", file=sys.stderr)
        return 1
    print(f"chart-check: default values and {len(EXAMPLES)} examples render, lint and validate "
          f"against Kubernetes {', '.join(K8S_VERSIONS)}; k8s/ validates")
    return 0


if __name__ == "__main__":
    sys.exit(main())
