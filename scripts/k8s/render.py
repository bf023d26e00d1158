"""Renders Kubernetes manifests for a Sparta job from its config file.

  scripts/sparta k8s CONFIG --image IMAGE [--set key=value]... [--out FILE]

Objects (all named <name>-...):
  ConfigMap   <name>-config     the config file, as given (mounted at /etc/sparta/job.yaml)
  Service     <name>-scheduler  the scheduler's control port, and /metrics
  Deployment  <name>-scheduler  one scheduler; its state on the shared volume, so a restarted pod takes over
              (with cluster.coordination etcd://...: a StatefulSet of --schedulers schedulers behind a
              headless Service, one leading and the others standing by; the state lives in etcd, and
              every node connects to each scheduler's own DNS name)
  Service     <name>-server     headless, for the StatefulSet's stable names
  StatefulSet <name>-server     cluster.servers servers (pod ordinal = rank), each with its own
                                volume for RocksDB (storage.db_path); checkpoints on the shared volume.
                                `kubectl scale statefulset <name>-server --replicas N` adds servers to
                                the running job (their --join: shards move to each until rows balance);
                                to shrink, `sparta-ctl scale --servers N` first (the highest ranks drain
                                and exit), then scale the StatefulSet down to N.
  Job         <name>-worker     cluster.workers workers, Indexed (completion index = rank); with
                                data.assignment on_demand a failed pod is replaced (3 times per index)
  PersistentVolumeClaim <name>-shared  ReadWriteMany: storage.path (checkpoints, scheduler state)
  Deployment  <name>-serve      --serving N sparta-serve front-ends (default 2 when the config sets
                                serving.model), each following the job's checkpoints on the shared
                                volume (serving.model latest); ready once a version is loaded (/readyz)
  Service     <name>-serve      port serving.port across the ready front-ends (the cluster's own load
                                balancing)
  With serving.shards N > 0 the front-ends read sparse rows from a serving cluster of their own:
  Service     <name>-serving-scheduler  its scheduler's control port
  Deployment  <name>-serving-scheduler  sparta-scheduler --serving (no state, no checkpoints: it restores
                                serving.model latest, the job's newest checkpoint when it starts)
  Service     <name>-serving-server     headless
  StatefulSet <name>-serving-server     N sparta-server --serving (pod ordinal = rank), read-only shards
                                replicated by storage.replication_factor; their RocksDB on an emptyDir (a copy
                                of the checkpoint, rebuilt by a restarted pod from the checkpoint or a replica)

With cluster.auth: curve the key file comes from the Secret <name>-cluster-key
(kubectl create secret generic <name>-cluster-key --from-file=cluster.key=FILE).
Daemons bind their pod IP (downward API), never all interfaces.
"""

import json
import shlex

SHARED = "/var/lib/sparta"       # storage.path: checkpoints + scheduler state (shared)
DB = "/var/lib/sparta-db"        # storage.db_path: each server's RocksDB (its own volume)
CONFIG = "/etc/sparta/job.yaml"
KEYS = "/etc/sparta/keys"
BIN = "/opt/sparta/bin"


def render(config, config_text, args):
    name, ns = args.name, args.namespace
    port = int(config["cluster.scheduler"].rsplit(":", 1)[1]) or 7070
    metrics = config.get("metrics.port", 0)
    metrics = metrics if metrics > 0 else 9400
    curve = config.get("cluster.auth") == "curve"
    labels = lambda role: {"app.kubernetes.io/name": "sparta", "app.kubernetes.io/instance": name,
                           "app.kubernetes.io/component": role}
    meta = lambda kind_name, role: {"name": kind_name, "namespace": ns, "labels": labels(role)}
    scrape = {"prometheus.io/scrape": "true", "prometheus.io/port": str(metrics), "prometheus.io/path": "/metrics"}
    # cluster.coordination etcd: standby schedulers, each at its own stable
    # name (a StatefulSet pod behind a headless Service); the key prefix in
    # etcd is named after the job, not after those addresses.
    coordination = config.get("cluster.coordination", "local")
    standbys = coordination.startswith("etcd://")
    if standbys:
        schedulers = ",".join(f"{name}-scheduler-{i}.{name}-scheduler.{ns}.svc:{port}" for i in range(args.schedulers))
        if "/" not in coordination[len("etcd://"):]:
            coordination += f"/{ns}-{name}"
    else:
        schedulers = f"{name}-scheduler.{ns}.svc:{port}"
    common_sets = [f"cluster.scheduler={schedulers}", f"metrics.port={metrics}",
                   f"storage.path={SHARED}"] + list(args.set) + ([f"cluster.coordination={coordination}"] if standbys else [])
    if curve:
        common_sets.append(f"cluster.key_file={KEYS}/cluster.key")

    def command(role, sets, bind, rank_expr=None, extra=""):
        """sh -c 'exec DAEMON ...': the shell expands the pod IP (downward API),
        the interface the daemon binds, and the rank from the pod's identity."""
        argv = [f"{BIN}/sparta-{role}", "--config", CONFIG]
        for s in sets:
            argv += ["--set", s]
        text = shlex.join(argv) + f' --set "{bind}"' + extra
        if rank_expr:
            text += f' --rank "{rank_expr}"'
        return ["/bin/sh", "-c", "exec " + text]

    env = [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]
    mounts = [{"name": "config", "mountPath": "/etc/sparta/job.yaml", "subPath": "job.yaml", "readOnly": True}]
    volumes = [{"name": "config", "configMap": {"name": f"{name}-config"}}]
    if curve:
        mounts.append({"name": "keys", "mountPath": KEYS, "readOnly": True})
        volumes.append({"name": "keys", "secret": {"secretName": f"{name}-cluster-key", "defaultMode": 0o400}})
    shared_mount = {"name": "shared", "mountPath": SHARED}
    shared_volume = {"name": "shared", "persistentVolumeClaim": {"claimName": f"{name}-shared"}}
    ports = lambda extra: extra + [{"name": "metrics", "containerPort": metrics}]
    storage_class = {"storageClassName": args.storage_class} if args.storage_class else {}
    # Eviction sends SIGTERM to every pod of the job at once: the scheduler
    # takes a final checkpoint and ends the job within cluster.shutdown_grace;
    # the pods get that and a margin before SIGKILL.
    grace = {"terminationGracePeriodSeconds": int(config["cluster.shutdown_grace"]) + 10}

    docs = []
    docs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(f"{name}-config", "config"),
                 "data": {"job.yaml": config_text}})
    docs.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta(f"{name}-shared", "storage"),
                 "spec": {"accessModes": ["ReadWriteMany"], **storage_class,
                          "resources": {"requests": {"storage": args.storage}}}})
    scheduler_ports = [{"name": "control", "port": port, "targetPort": port},
                       {"name": "metrics", "port": metrics, "targetPort": metrics}]
    scheduler_pod = lambda command_line: {
        "metadata": {"labels": labels("scheduler"), "annotations": scrape},
        "spec": {**grace, "containers": [{"name": "scheduler", "image": args.image, "command": command_line, "env": env,
                                          "ports": ports([{"name": "control", "containerPort": port}]),
                                          "volumeMounts": mounts + [shared_mount]}],
                 "volumes": volumes + [shared_volume]}}
    if standbys:
        # Headless, and naming pods before they are ready: a standby's name
        # must resolve while it waits to lead (it listens only then).
        docs.append({"apiVersion": "v1", "kind": "Service", "metadata": meta(f"{name}-scheduler", "scheduler"),
                     "spec": {"clusterIP": "None", "publishNotReadyAddresses": True, "selector": labels("scheduler"),
                              "ports": scheduler_ports}})
        # Every scheduler has the same list; the pod ordinal says which
        # address is its own (it binds what its name resolves to).
        scheduler_cmd = command("scheduler", common_sets, "cluster.host=${POD_IP}", "${HOSTNAME##*-}",
                                extra=f" --summary {SHARED}/summary.json")
        docs.append({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta(f"{name}-scheduler", "scheduler"),
                     "spec": {"serviceName": f"{name}-scheduler", "replicas": args.schedulers,
                              "podManagementPolicy": "Parallel", "selector": {"matchLabels": labels("scheduler")},
                              "template": scheduler_pod(scheduler_cmd)}})
    else:
        docs.append({"apiVersion": "v1", "kind": "Service", "metadata": meta(f"{name}-scheduler", "scheduler"),
                     "spec": {"selector": labels("scheduler"), "ports": scheduler_ports}})
        # The scheduler binds its pod IP on the control port; the others reach it through the Service.
        scheduler_sets = [s for s in common_sets if not s.startswith("cluster.scheduler=")]
        scheduler_cmd = command("scheduler", scheduler_sets, f"cluster.scheduler=${{POD_IP}}:{port}",
                                extra=f" --summary {SHARED}/summary.json")
        docs.append({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta(f"{name}-scheduler", "scheduler"),
                     "spec": {"replicas": 1, "strategy": {"type": "Recreate"},
                              "selector": {"matchLabels": labels("scheduler")},
                              "template": scheduler_pod(scheduler_cmd)}})
    docs.append({"apiVersion": "v1", "kind": "Service", "metadata": meta(f"{name}-server", "server"),
                 "spec": {"clusterIP": "None", "selector": labels("server"),
                          "ports": [{"name": "metrics", "port": metrics, "targetPort": metrics}]}})
    docs.append({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta(f"{name}-server", "server"),
                 "spec": {"serviceName": f"{name}-server", "replicas": config["cluster.servers"],
                          # All servers start together: the scheduler waits for every rank.
                          "podManagementPolicy": "Parallel",
                          "selector": {"matchLabels": labels("server")},
                          "template": {"metadata": {"labels": labels("server"), "annotations": scrape},
                                       "spec": {**grace, "containers": [{
                                           "name": "server", "image": args.image,
                                           # The pod ordinal (name-server-N) is the rank. With
                                           # --join a pod past cluster.servers (kubectl scale) joins
                                           # the running job; before it runs, --join changes nothing.
                                           "command": command("server", common_sets + [f"storage.db_path={DB}"],
                                                              "cluster.host=${POD_IP}", "${HOSTNAME##*-}",
                                                              extra=" --join"),
                                           "env": env, "ports": ports([]),
                                           "volumeMounts": mounts + [shared_mount, {"name": "db", "mountPath": DB}]}],
                                           "volumes": volumes + [shared_volume]}},
                          "volumeClaimTemplates": [{"metadata": {"name": "db"},
                                                    "spec": {"accessModes": ["ReadWriteOnce"], **storage_class,
                                                             "resources": {"requests": {"storage": args.storage}}}}]}})
    workers = config["cluster.workers"]
    # data.assignment on_demand: a dead worker's units go back to the pool,
    # so its pod may be replaced (a preempted node, an OOM kill): the Job
    # starts a new pod under the same completion index, which registers
    # under that rank once the scheduler has declared the old one dead, as
    # the local launcher does (worker.restart, 3 times per rank). With
    # static slices a failed worker fails the job: no retry.
    on_demand = config.get("data.assignment") == "on_demand"
    replaceable = on_demand and config.get("worker.restart", True)
    docs.append({"apiVersion": "batch/v1", "kind": "Job", "metadata": meta(f"{name}-worker", "worker"),
                 "spec": {"completions": workers, "parallelism": workers, "completionMode": "Indexed",
                          # (backoffLimitPerIndex: Kubernetes 1.29 or later.)
                          **({"backoffLimitPerIndex": 3} if replaceable else {"backoffLimit": 0}),
                          "template": {"metadata": {"labels": labels("worker"), "annotations": scrape},
                                       "spec": {**grace, "restartPolicy": "Never", "containers": [{
                                           "name": "worker", "image": args.image,
                                           "command": command("worker", common_sets, "cluster.host=${POD_IP}",
                                                              "${JOB_COMPLETION_INDEX}"),
                                           "env": env, "ports": ports([]), "volumeMounts": mounts}],
                                           "volumes": volumes}}}})
    def serving_cluster(shards, sets):
        """The scheduler and the N servers of a serving cluster (serving.shards: N)."""
        sets = [s for s in sets if not s.startswith(("cluster.scheduler=", "cluster.coordination=", "serving.port=",
                                                     "serving.zmq_port="))]
        # Its own scheduler, and no etcd: a serving cluster keeps no state to take over.
        sets += ["cluster.coordination=local", f"serving.shards={shards}", f"cluster.servers={shards}"]
        pod = lambda role, command_line, extra_mounts, extra_volumes: {
            "metadata": {"labels": labels(f"serving-{role}"), "annotations": scrape},
            "spec": {**grace, "containers": [{
                "name": role, "image": args.image, "command": command_line, "env": env,
                "ports": ports([{"name": "control", "containerPort": port}] if role == "scheduler" else []),
                # The job's checkpoints, only read.
                "volumeMounts": mounts + [{**shared_mount, "readOnly": True}] + extra_mounts}],
                "volumes": volumes + [shared_volume] + extra_volumes}}
        scheduler_cmd = command("scheduler", sets, f"cluster.scheduler=${{POD_IP}}:{port}", extra=" --serving")
        server_cmd = command("server", sets + [f"cluster.scheduler={name}-serving-scheduler.{ns}.svc:{port}",
                                               f"storage.db_path={DB}"],
                             "cluster.host=${POD_IP}", "${HOSTNAME##*-}", extra=" --serving")
        return [
            {"apiVersion": "v1", "kind": "Service", "metadata": meta(f"{name}-serving-scheduler", "serving-scheduler"),
             "spec": {"selector": labels("serving-scheduler"),
                      "ports": [{"name": "control", "port": port, "targetPort": port}]}},
            {"apiVersion": "apps/v1", "kind": "Deployment",
             "metadata": meta(f"{name}-serving-scheduler", "serving-scheduler"),
             "spec": {"replicas": 1, "strategy": {"type": "Recreate"},
                      "selector": {"matchLabels": labels("serving-scheduler")},
                      "template": pod("scheduler", scheduler_cmd, [], [])}},
            {"apiVersion": "v1", "kind": "Service", "metadata": meta(f"{name}-serving-server", "serving-server"),
             "spec": {"clusterIP": "None", "selector": labels("serving-server"),
                      "ports": [{"name": "metrics", "port": metrics, "targetPort": metrics}]}},
            {"apiVersion": "apps/v1", "kind": "StatefulSet",
             "metadata": meta(f"{name}-serving-server", "serving-server"),
             "spec": {"serviceName": f"{name}-serving-server", "replicas": shards, "podManagementPolicy": "Parallel",
                      "selector": {"matchLabels": labels("serving-server")},
                      "template": pod("server", server_cmd, [{"name": "db", "mountPath": DB}],
                                      [{"name": "db", "emptyDir": {}}])}},
        ]

    serving = args.serving if args.serving >= 0 else (2 if config.get("serving.model") else 0)
    if serving > 0:
        serve_port = config.get("serving.port", 8501) or 8501
        zmq_port = config.get("serving.zmq_port", 8502)
        serve_sets = common_sets + ["serving.model=latest", f"serving.port={serve_port}"]
        serve_ports = [{"name": "http", "port": serve_port, "targetPort": serve_port}]
        if zmq_port and zmq_port > 0:
            serve_sets.append(f"serving.zmq_port={zmq_port}")
            serve_ports.append({"name": "zmq", "port": zmq_port, "targetPort": zmq_port})
        probe = lambda path, delay: {"httpGet": {"path": path, "port": serve_port}, "initialDelaySeconds": delay,
                                     "periodSeconds": 5}
        shards = config.get("serving.shards", 0) or 0
        if shards > 0:
            serving_scheduler = f"{name}-serving-scheduler.{ns}.svc:{port}"
            docs += serving_cluster(shards, serve_sets)
            # The front-ends register with the serving cluster's scheduler, not the job's.
            serve_sets = [s for s in serve_sets if not s.startswith(("cluster.scheduler=", "cluster.coordination="))]
            serve_sets += [f"cluster.scheduler={serving_scheduler}", f"serving.shards={shards}"]
        docs.append({"apiVersion": "v1", "kind": "Service", "metadata": meta(f"{name}-serve", "serve"),
                     "spec": {"selector": labels("serve"),
                              "ports": serve_ports}})
        docs.append({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta(f"{name}-serve", "serve"),
                     "spec": {"replicas": serving, "selector": {"matchLabels": labels("serve")},
                              "template": {"metadata": {"labels": labels("serve"),
                                                        "annotations": {**scrape, "prometheus.io/port": str(serve_port)}},
                                           "spec": {"containers": [{
                                               "name": "serve", "image": args.image,
                                               "command": command("serve", serve_sets, "cluster.host=${POD_IP}"),
                                               "env": env,
                                               "ports": [{"name": p["name"], "containerPort": p["port"]}
                                                         for p in serve_ports],
                                               # Ready once a model version is loaded: the Service sends
                                               # requests only to front-ends that can answer them.
                                               "readinessProbe": probe("/readyz", 2),
                                               "livenessProbe": probe("/healthz", 10),
                                               "volumeMounts": mounts + [{**shared_mount, "readOnly": True}]}],
                                               "volumes": volumes + [shared_volume]}}}})
    header = (f"# Sparta job '{name}' rendered by scripts/sparta k8s from {args.config}.\n"
              f"# kubectl apply -f THIS_FILE; the data paths of the config must exist in the image or a mounted volume.\n")
    # JSON is YAML: one document per object, as kubectl reads them.
    return header + "".join("---\n" + json.dumps(d, indent=2) + "\n" for d in docs)
