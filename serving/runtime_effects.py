"""What a ServingRuntime's fields do on each backend, said when it is applied ("accepted means in effect, or said").

On Kubernetes the runtime's pod fields, labels and annotations, its main container's Kubernetes fields and its
other containers (sidecars) go into the predictor's pod (`serving.control.kubernetes.render`); on the local
backend they have nothing to act on, and each one set is named. ModelMesh's fields (KServe's multi-model
serving; its single-model serving ignores them too) and a disabled storage helper have no effect anywhere here;
flags of the args the backend drops are named as `model.args`' are.
"""

from __future__ import annotations

from serving.servingruntime import ServingRuntime, dropped_flags, main_container_index
from serving.spec import KUBERNETES_CONTAINER_ONLY
from serving.spec_effects import field_name

ON_KUBERNETES = {
    "labels": "on the predictor's Deployment and pods (under the InferenceService's and the predictor's own)",
    "annotations": "on the predictor's pods (under the InferenceService's and the predictor's own)",
    "nodeSelector": "merged into the predictor's pod (the predictor's own keys win)",
    "affinity": "merged into the predictor's pod (the predictor's own wins a kind of affinity both set)",
    "tolerations": "the predictor's pod's, unless the predictor sets its own",
    "imagePullSecrets": "added to the predictor's pod",
    "volumes": "added to the predictor's pod (for the containers' volumeMounts)",
    "hostIPC": "the predictor's pod's",
}
MODELMESH_ONLY = ("builtInAdapter", "grpcEndpoint", "grpcDataEndpoint", "httpDataEndpoint", "replicas")


def runtime_warnings(runtime: ServingRuntime, *, local: bool) -> list[str]:
    """One warning per field set that does nothing (or less than it says) on this backend."""
    spec = runtime.spec
    out = dropped_flags(runtime)
    out += [
        f"spec.{name}: accepted; no effect: a ModelMesh (multi-model serving) setting, which KServe's single-model "
        "serving ignores too"
        for name in MODELMESH_ONLY
        if getattr(spec, field_name(type(spec), name)) is not None
    ]
    if (spec.storage_helper or {}).get("disabled"):
        out.append(
            "spec.storageHelper.disabled: accepted; no effect: our model server reads the model the backend fetches "
            "(on Kubernetes the storage-initializer into /mnt/models, locally serving up); it fetches none itself"
        )
    if not local:
        return out
    out += [
        f"spec.{name}: accepted; no effect on the local backend; on Kubernetes: {effect}"
        for name, effect in ON_KUBERNETES.items()
        if getattr(spec, field_name(type(spec), name)) not in (None, {}, ())
    ]
    main = spec.main_container
    if main is None:
        return out
    where = f"spec.containers[{main_container_index(spec.containers)}]"
    out += [
        f"{where}.{name}: accepted; no effect on the local backend; on Kubernetes: the predictor's kserve-container "
        "(unless its model sets it)"
        for name in ("resources", *KUBERNETES_CONTAINER_ONLY)
        if getattr(main, field_name(type(main), name)) not in (None, {}, ())
    ]
    out += [
        f"spec.containers[{i}] ({c.name}): accepted; no effect on the local backend; on Kubernetes: a sidecar beside "
        "the model server in the predictor's pod"
        for i, c in enumerate(spec.containers)
        if c is not main
    ]
    return out
