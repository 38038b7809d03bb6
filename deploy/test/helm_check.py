"""Checks deploy/helm/turnstone offline: Helm's own lint, renders of the chart with several
value sets, every rendered object against Kubernetes' schemas (kubernetes-validate --strict),
and the values schema refusing bad values at install. Run with a Python that has
helm-python-sdk and kubernetes-validate (scripts/containers.sh makes one). Exit 1 on the
first problem, with what and why.
"""

import os
import subprocess
import sys
import tempfile

import helm_python as helm
import yaml

CHART = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "helm", "turnstone")
VALIDATE = os.path.join(os.path.dirname(sys.executable), "kubernetes-validate")


def fail(message):
    print(f"FAIL: {message}")
    sys.exit(1)


def render(values):
    chart = helm.Chart.load(CHART)
    try:
        return chart.render(values, name="ts", namespace="ai", is_install=True)
    finally:
        chart.close()


def objects(rendered):
    out = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                out.append((path, doc))
    return out


def validate(docs, label):
    with tempfile.TemporaryDirectory() as d:
        files = []
        for i, (path, doc) in enumerate(docs):
            f = os.path.join(d, f"{i:02}-{os.path.basename(path)}")
            with open(f, "w") as out:
                yaml.safe_dump(doc, out)
            files.append(f)
        run = subprocess.run([VALIDATE, "--strict", "--quiet", *files], capture_output=True, text=True)
        if run.returncode != 0 or "ERROR" in run.stdout:
            fail(f"{label}: kubernetes-validate --strict:\n{run.stdout}{run.stderr}")


def kinds(docs):
    return sorted(f"{d['kind']}/{d['metadata']['name']}" for _, d in docs)


lint = helm.lint(CHART, strict=True)
if lint["errors"] or any(m["severity"] >= 3 for m in lint["messages"]):
    fail(f"helm lint: {lint}")

defaults = objects(render({}))
validate(defaults, "defaults")
expected = sorted([
    "ConfigMap/ts-turnstone-config", "Deployment/ts-turnstone-channel",
    "Deployment/ts-turnstone-console", "Deployment/ts-turnstone-node",
    "PodDisruptionBudget/ts-turnstone-node", "Service/ts-turnstone-channel",
    "Service/ts-turnstone-console", "Service/ts-turnstone-node",
])
if kinds(defaults) != expected:
    fail(f"defaults render {kinds(defaults)}, expected {expected}")
node = next(d for _, d in defaults if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-node"))
container = node["spec"]["template"]["spec"]["containers"][0]
for probe, path in (("readinessProbe", "/health/ready"), ("livenessProbe", "/health")):
    if container[probe]["httpGet"]["path"] != path:
        fail(f"node {probe} is {container[probe]}")
if "requests" not in container["resources"]:
    fail("node has no resource requests")
if node["spec"]["template"]["metadata"]["annotations"].get("prometheus.io/scrape") != "true":
    fail("node pods are not annotated for Prometheus")
env = {e["name"]: e for e in container["env"]}
if env["TURNSTONE_JWT_SECRET"]["valueFrom"]["secretKeyRef"]["name"] != "turnstone":
    fail("the JWT secret is not read from the Secret")
if env["TURNSTONE_DB_BACKEND"]["value"] != "postgresql":
    fail("nodes are not on PostgreSQL by default")

channel = next(d for _, d in defaults if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-channel"))
gateway = channel["spec"]["template"]["spec"]["containers"][0]
for probe in ("readinessProbe", "livenessProbe"):
    if gateway[probe]["httpGet"]["path"] != "/health":
        fail(f"channel {probe} is {gateway[probe]}")
if "requests" not in gateway["resources"]:
    fail("the channel gateway has no resource requests")
genv = {e["name"]: e for e in gateway["env"]}
if not genv["DISCORD_TOKEN"]["valueFrom"]["secretKeyRef"].get("optional"):
    fail("the Discord token is not an optional Secret key")
if "http://ts-turnstone-channel:8091" not in gateway["args"]:
    fail(f"the gateway does not advertise its Service: {gateway['args']}")

image = container["image"]
if image != "turnstone:0.1.0":
    fail(f"the default image is {image}, not the chart's appVersion tag")

with open(os.path.join(CHART, "values-production.yaml")) as f:
    production_values = yaml.safe_load(f)
production = objects(render(production_values))
validate(production, "values-production.yaml")
pnode = next(d for _, d in production if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-node"))
if pnode["spec"]["replicas"] != 3:
    fail("values-production.yaml: not three nodes")
if pnode["spec"]["template"]["spec"]["containers"][0]["image"] != "registry.example.com/turnstone:0.1.0":
    fail("values-production.yaml: the image tag is not the one given")
if not any(d["kind"] == "Ingress" for _, d in production):
    fail("values-production.yaml: no Ingress")

variants = {
    "ingress with TLS": {"ingress": {"enabled": True, "host": "ts.example.com", "className": "nginx",
                                     "tls": [{"secretName": "ts-tls", "hosts": ["ts.example.com"]}]}},
    "one SQLite node, no console": {"nodes": {"replicas": 1, "port": 8080},
                                    "database": {"backend": "sqlite"}, "console": {"enabled": False}},
    "a Matrix gateway": {"channel": {"matrix": {"homeserver": "https://matrix.example.org", "user": "bot",
                                                "rooms": ["!a:example.org"]}, "discord": {"guild": 42}}},
    "the chart's own Redis and PostgreSQL": {"redis": {"enabled": True, "persistence": {"size": "2Gi"},
                                                       "existingSecret": "ts-data"},
                                             "postgresql": {"enabled": True, "existingSecret": "ts-data"}},
    "tracing and a model": {"telemetry": {"otlpEndpoint": "http://otel:4318", "sampler": "parentbased_traceidratio",
                                          "samplerArg": "0.1"}, "llm": {"baseUrl": "http://m:8000/v1", "model": "qwen"}},
}
for label, values in variants.items():
    docs = objects(render(values))
    validate(docs, label)
    if label == "ingress with TLS" and not any(d["kind"] == "Ingress" for _, d in docs):
        fail("no Ingress rendered")
    if label == "one SQLite node, no console":
        if any("console" in d["metadata"]["name"] for _, d in docs):
            fail("the console rendered though disabled")
    if label == "one SQLite node, no console":
        if any(d["metadata"]["name"].endswith("-channel") for _, d in docs):
            fail("the chat gateway rendered without the shared database")
    if label == "a Matrix gateway":
        gw = next(d for _, d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-channel"))
        args = gw["spec"]["template"]["spec"]["containers"][0]["args"]
        for flag, value in (("--matrix-homeserver", "https://matrix.example.org"), ("--matrix-rooms", "!a:example.org"),
                            ("--discord-guild", "42")):
            if args[args.index(flag) + 1] != value:
                fail(f"{flag} is not {value}: {args}")
    if label == "the chart's own Redis and PostgreSQL":
        sets = {d["metadata"]["name"]: d for _, d in docs if d["kind"] == "StatefulSet"}
        if sorted(sets) != ["ts-postgresql", "ts-redis"]:
            fail(f"the subcharts render StatefulSets {sorted(sets)}")
        for name, port in (("ts-redis", 6379), ("ts-postgresql", 5432)):
            svc = next((d for _, d in docs if d["kind"] == "Service" and d["metadata"]["name"] == name), None)
            if svc is None or svc["spec"]["ports"][0]["port"] != port:
                fail(f"no Service {name} on {port}")
            pod = sets[name]["spec"]["template"]["spec"]
            box = pod["containers"][0]
            if not (pod["securityContext"]["runAsNonRoot"] and box.get("readinessProbe") and "requests" in box["resources"]):
                fail(f"{name} lacks non-root, a readiness probe or resource requests: {pod}")
        claim = sets["ts-redis"]["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
        if claim != "2Gi":
            fail(f"Redis' volume is {claim}, not the 2Gi asked")
        redis_env = {e["name"]: e for e in sets["ts-redis"]["spec"]["template"]["spec"]["containers"][0]["env"]}
        if redis_env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] != "ts-data":
            fail("the chart's Redis does not read its password from redis.existingSecret")
        if "--appendonly yes" not in " ".join(sets["ts-redis"]["spec"]["template"]["spec"]["containers"][0]["args"]):
            fail("the chart's Redis does not keep an append-only file")
        for d in (x for _, x in docs if x["kind"] == "Deployment"):
            denv = {e["name"]: e for e in d["spec"]["template"]["spec"]["containers"][0]["env"]}
            if denv["REDIS_HOST"]["value"] != "ts-redis":
                fail(f"{d['metadata']['name']} uses Redis {denv['REDIS_HOST']}, not the chart's")
            url = denv["TURNSTONE_DB_URL"].get("value", "")
            if url != "postgresql://turnstone:$(TURNSTONE_POSTGRES_PASSWORD)@ts-postgresql:5432/turnstone":
                fail(f"{d['metadata']['name']} has database URL {denv['TURNSTONE_DB_URL']}")
            for var in ("REDIS_PASSWORD", "TURNSTONE_POSTGRES_PASSWORD"):
                if denv[var]["valueFrom"]["secretKeyRef"]["name"] != "ts-data":
                    fail(f"{d['metadata']['name']} reads {var} from another Secret than the server's")
            names = [e["name"] for e in d["spec"]["template"]["spec"]["containers"][0]["env"]]
            if names.index("TURNSTONE_POSTGRES_PASSWORD") > names.index("TURNSTONE_DB_URL"):
                fail("the password is defined after the URL that refers to it (Kubernetes expands only earlier ones)")
    if label == "one SQLite node, no console":
        if any(d["kind"] == "StatefulSet" for _, d in docs):
            fail("Redis or PostgreSQL rendered though not enabled")
    if label == "tracing and a model":
        config = next(d for _, d in docs if d["kind"] == "ConfigMap")["data"]["config.toml"]
        if 'name = "qwen"' not in config:
            fail(f"the model is not in config.toml:\n{config}")

refused = {
    "unknown provider": {"llm": {"baseUrl": "http://m/v1", "provider": "gemini"}},
    "zero nodes": {"nodes": {"replicas": 0, "port": 8080}},
    "a misspelt key": {"nodez": {}},
    "a port out of range": {"nodes": {"replicas": 1, "port": 70000}},
    "two SQLite nodes": {"database": {"backend": "sqlite"}},
    "a ServiceMonitor without its CRD": {"metrics": {"serviceMonitor": {"enabled": True}}},
    "the chart's PostgreSQL under SQLite nodes": {"postgresql": {"enabled": True}, "nodes": {"replicas": 1, "port": 8080},
                                                  "database": {"backend": "sqlite"}},
    "a volume size that is not a quantity": {"redis": {"host": "r", "port": 6379, "enabled": True,
                                                       "persistence": {"size": "lots"}}},
    "a homeserver that is not a URL": {"channel": {"matrix": {"homeserver": "matrix.example.org"}}},
}
for label, values in refused.items():
    try:
        render(values)
    except helm.HelmError as e:
        print(f"refused as it should: {label}: {' '.join(str(e).split())[:200]}")
        continue
    fail(f"{label} was accepted")

print(f"ok: lint clean, {len(defaults)} objects by default, values-production.yaml and "
      f"{len(variants)} variants valid, "
      f"{len(refused)} bad value sets refused")
