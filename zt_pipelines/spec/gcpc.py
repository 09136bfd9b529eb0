"""The catalogue of Google Cloud Pipeline Components (GCPC) launchers, as frozen data.

Written from GCPC 2.22's own sources (``google_cloud_pipeline_components/container/v1/**``,
``container/preview/**``, ``container/_implementation/**`` and the component definitions under
``v1/``, ``preview/`` and ``_implementation/``). For every kind of job a GCPC step creates it
records how to recognise the launcher, where the job's identity is set, which permissions the
caller (whoever runs the launcher) and the job's identity need, and which component inputs
steer the job's project, location, network and CMEK key.

Recognition is by the Python module the container runs (``python3 -u -m MODULE``) and the
launcher's ``--type`` argument, never by an image tag: GCPC versions change images, and other
Google images (``automl-tables-private``) ship the same launchers under the module name
``launcher``. The payload's structure is checked by :mod:`zt_pipelines.spec.payload`.

Pure data and one recogniser; no IO, no kfp import. See ``docs/rewrite.md`` (GCPC section).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "CATALOGUE",
    "GCPC_MODULE_PREFIX",
    "JOB_IDENTITY_INPUTS",
    "IdentityKind",
    "JobIdentity",
    "LauncherKind",
    "by_name",
    "identify_launcher",
    "is_gcpc_launcher_module",
    "launcher_module",
    "launcher_type",
]

GCPC_MODULE_PREFIX = "google_cloud_pipeline_components.container."
"""Every GCPC launcher module starts with this; an unknown one is refused, never trusted."""

IdentityKind = Literal[
    "payload",  # a field of the launcher's --payload JSON (path in ``payload_path``)
    "args_flag",  # a flag inside a list input passed to the job (Dataflow python ``args``)
    "caller",  # the job runs as whoever calls the API: the launcher's own identity
    "service_agent",  # the job runs as a Google service agent; no field can change it
    # the call runs as the caller, and a Google service agent reads or writes for it with its
    # own identity (policy/lending.py: what it reaches is judged, ZT224)
    "lent",
    "unreadable",  # the identity is set in a form zt-pipelines cannot read (templated)
]


@dataclass(frozen=True)
class JobIdentity:
    """Where a launched job's identity is set.

    Attributes:
        kind: see :data:`IdentityKind`.
        payload_path: for ``payload``: the JSON path of the identity field in the payload.
        input: the component input GCPC puts there when a user passes the component's
            identity keyword (``service_account=``, ``service_account_email=``); ``""`` if none.
        flag: for ``args_flag``: the flag in the list input ``input`` (``--service_account_email``).
        what: a human description for reports and docs.
    """

    kind: IdentityKind
    payload_path: tuple[str, ...] = ()
    input: str = ""
    flag: str = ""
    what: str = ""


@dataclass(frozen=True)
class LauncherKind:
    """One kind of GCPC launcher and the job it creates.

    Attributes:
        name: the kind's name (the launcher's ``--type`` value where it has one).
        job: the Google resource the launcher creates or acts on (``aiplatform.customJobs``).
        modules: the Python modules implementing the launcher (``python3 -u -m MODULE``).
        job_types: accepted ``--type`` values (empty: the launcher takes no ``--type``).
        identity: where the launched job's identity is set.
        wrap: ``True`` when the launcher's API calls carry no identity of their own (the job
            runs as the caller, or the launcher runs user code): the rewrite wraps the step
            in a CustomJob like any container, so its calls are made by the step's identity.
            ``False``: the launcher stays as GCPC built it (it runs as the pipeline SA) and the
            step's identity is pinned into ``identity``.
        caller_permissions: IAM permissions whoever runs the launcher needs (in the job's
            project), besides ``iam.serviceAccounts.actAs`` on the job identity when
            ``caller_acts_as``.
        caller_acts_as: the caller needs ``iam.serviceAccounts.actAs`` on the job identity.
        job_permissions: permissions the launched job's identity needs for the job itself
            (data it reads or writes is declared by the user).
        serving_identity: for deploy: where the deployed model's serving identity is set.
        project_inputs / location_inputs / network_inputs / cmek_inputs: component inputs that
            steer the job's project, location, network and CMEK key.
        payload_flag: the launcher argument carrying the JSON payload (``--payload``), or
            ``""`` when the launcher takes none.
        supported: ``False`` when no rewrite can give the job an identity of its own; the
            rewrite refuses such a step with ``refusal``.
        refusal: why the step is refused, and what to use instead.
        source: the GCPC source the entry was written from.
    """

    name: str
    job: str
    modules: tuple[str, ...]
    job_types: tuple[str, ...]
    identity: JobIdentity
    wrap: bool
    caller_permissions: tuple[str, ...]
    caller_acts_as: bool = False
    job_permissions: tuple[str, ...] = ()
    serving_identity: JobIdentity | None = None
    project_inputs: tuple[str, ...] = ("project",)
    location_inputs: tuple[str, ...] = ("location",)
    network_inputs: tuple[str, ...] = ()
    cmek_inputs: tuple[str, ...] = ()
    payload_flag: str = "--payload"
    supported: bool = True
    refusal: str = ""
    source: str = ""


_V1 = GCPC_MODULE_PREFIX + "v1."
_CALLER = JobIdentity("caller", what="runs as the caller (the step's own identity)")
_BQ_CMEK = ("encryption_spec_key_name",)
_DATAFLOW_WORKER = (
    "dataflow.jobs.get",
    "dataflow.shuffle.read",
    "dataflow.shuffle.write",
    "dataflow.streamingWorkItems.commitWork",
    "dataflow.streamingWorkItems.getData",
    "dataflow.streamingWorkItems.getWork",
    "dataflow.workItems.lease",
    "dataflow.workItems.sendMessage",
    "dataflow.workItems.update",
    "logging.logEntries.create",
)
_DATAPROC_WORKER = (
    "dataproc.agents.create",
    "dataproc.agents.delete",
    "dataproc.agents.get",
    "dataproc.agents.update",
    "dataproc.tasks.lease",
    "dataproc.tasks.listInvalidatedLeases",
    "dataproc.tasks.reportStatus",
    "logging.logEntries.create",
)


def _bq(module: str, job_type: str, *extra: str) -> LauncherKind:
    return LauncherKind(
        name=job_type,
        job="bigquery.jobs",
        modules=(f"{_V1}bigquery.{module}.launcher",),
        job_types=(job_type,),
        identity=_CALLER,
        wrap=True,
        caller_permissions=("bigquery.jobs.create", *extra),
        cmek_inputs=_BQ_CMEK,
        source=f"container/v1/bigquery/{module}",
    )


_BQ_READ_MODEL = ("bigquery.models.getData", "bigquery.models.getMetadata")


def _automl_training(
    name: str, module: str, job_types: tuple[str, ...], source: str
) -> LauncherKind:
    """An AutoML training launcher: refused, its pipeline runs as the Vertex AI Service Agent."""
    return LauncherKind(
        name=name,
        job="aiplatform.trainingPipelines",
        modules=(module,),
        job_types=job_types,
        identity=JobIdentity("service_agent", what="the Vertex AI Service Agent"),
        wrap=True,
        caller_permissions=(
            "aiplatform.trainingPipelines.create",
            "aiplatform.trainingPipelines.get",
            "aiplatform.datasets.get",
        ),
        cmek_inputs=("training_encryption_spec_key_name", "model_encryption_spec_key_name"),
        payload_flag="",
        supported=False,
        refusal="an AutoML training pipeline runs as the Vertex AI Service Agent, and no field "
        "can give it an identity of its own",
        source=source,
    )


CATALOGUE: tuple[LauncherKind, ...] = (
    # ---- jobs that carry their own identity: pinned in place, launcher runs as pipeline SA
    LauncherKind(
        name="CustomJob",
        job="aiplatform.customJobs",
        modules=(f"{_V1}custom_job.launcher", f"{GCPC_MODULE_PREFIX}preview.custom_job.launcher"),
        job_types=("CustomJob",),
        identity=JobIdentity(
            "payload",
            payload_path=("job_spec", "service_account"),
            input="service_account",
            what="CustomJob job_spec.service_account",
        ),
        wrap=False,
        caller_permissions=(
            "aiplatform.customJobs.create",
            "aiplatform.customJobs.get",
            "aiplatform.customJobs.cancel",
        ),
        caller_acts_as=True,
        network_inputs=("network", "psc_interface_config", "reserved_ip_ranges"),
        cmek_inputs=("encryption_spec_key_name",),
        source="container/v1/custom_job; v1/custom_job/component.py, utils.py",
    ),
    LauncherKind(
        name="HyperparameterTuningJob",
        job="aiplatform.hyperparameterTuningJobs",
        modules=(f"{_V1}hyperparameter_tuning_job.launcher",),
        job_types=("HyperparameterTuningJob", "HyperparameterTuningJobWithMetrics"),
        identity=JobIdentity(
            "payload",
            payload_path=("trial_job_spec", "service_account"),
            input="service_account",
            what="HyperparameterTuningJob trial_job_spec.service_account",
        ),
        wrap=False,
        caller_permissions=(
            "aiplatform.hyperparameterTuningJobs.create",
            "aiplatform.hyperparameterTuningJobs.get",
            "aiplatform.hyperparameterTuningJobs.cancel",
        ),
        caller_acts_as=True,
        network_inputs=("network",),
        cmek_inputs=("encryption_spec_key_name",),
        source="container/v1/hyperparameter_tuning_job; v1/hyperparameter_tuning_job",
    ),
    LauncherKind(
        name="BatchPredictionJob",
        job="aiplatform.batchPredictionJobs",
        modules=(f"{_V1}batch_prediction_job.launcher", "launcher"),
        job_types=("BatchPredictionJob",),
        identity=JobIdentity(
            "payload",
            payload_path=("service_account",),
            input="service_account",
            what="BatchPredictionJob service_account",
        ),
        wrap=False,
        caller_permissions=(
            "aiplatform.batchPredictionJobs.create",
            "aiplatform.batchPredictionJobs.get",
            "aiplatform.batchPredictionJobs.cancel",
            "aiplatform.models.get",
        ),
        caller_acts_as=True,
        cmek_inputs=("encryption_spec_key_name",),
        source="container/v1/batch_prediction_job; v1/batch_predict_job",
    ),
    LauncherKind(
        name="DataflowFlexTemplateJob",
        job="dataflow.jobs",
        modules=(f"{GCPC_MODULE_PREFIX}preview.dataflow.flex_template.launcher",),
        job_types=("DataflowJob",),
        identity=JobIdentity(
            "payload",
            payload_path=("launch_parameter", "environment", "service_account_email"),
            input="service_account_email",
            what="Dataflow flex template environment.service_account_email (worker SA)",
        ),
        wrap=False,
        caller_permissions=("dataflow.jobs.create", "dataflow.jobs.get", "dataflow.jobs.cancel"),
        caller_acts_as=True,
        job_permissions=_DATAFLOW_WORKER,
        network_inputs=("network", "subnetwork", "ip_configuration"),
        cmek_inputs=("kms_key_name",),
        source="container/preview/dataflow/flex_template; v1/dataflow/flex_template",
    ),
    *(
        LauncherKind(
            name=job_type,
            job="dataproc.batches",
            modules=(f"{_V1}dataproc.{module}.launcher",),
            job_types=(job_type,),
            identity=JobIdentity(
                "payload",
                payload_path=("environment_config", "execution_config", "service_account"),
                input="service_account",
                what="Dataproc batch environment_config.execution_config.service_account",
            ),
            wrap=False,
            caller_permissions=(
                "dataproc.batches.create",
                "dataproc.batches.get",
                "dataproc.operations.get",
            ),
            caller_acts_as=True,
            job_permissions=_DATAPROC_WORKER,
            network_inputs=("network_uri", "subnetwork_uri", "network_tags"),
            cmek_inputs=("kms_key",),
            source=f"container/v1/dataproc/{module}; v1/dataproc",
        )
        for module, job_type in (
            ("create_pyspark_batch", "DataprocPySparkBatch"),
            ("create_spark_batch", "DataprocSparkBatch"),
            ("create_spark_r_batch", "DataprocSparkRBatch"),
            ("create_spark_sql_batch", "DataprocSparkSqlBatch"),
        )
    ),
    # ---- launchers that run user code, or whose job runs as the caller: wrapped
    LauncherKind(
        name="DataflowPythonJob",
        job="dataflow.jobs",
        modules=(f"{_V1}dataflow.dataflow_launcher",),
        job_types=(),
        identity=JobIdentity(
            "args_flag",
            input="args",
            flag="--service_account_email",
            what="Dataflow worker SA (--service_account_email in the job's args)",
        ),
        wrap=True,  # the launcher runs the user's Beam program: never as the pipeline SA
        caller_permissions=(
            "dataflow.jobs.create",
            "dataflow.jobs.get",
            "storage.objects.create",
            "storage.objects.get",
        ),
        caller_acts_as=True,
        job_permissions=_DATAFLOW_WORKER,
        payload_flag="",
        source="container/v1/dataflow; v1/dataflow/python_job",
    ),
    _bq("query_job", "BigqueryQueryJob"),
    _bq("create_model", "BigqueryCreateModelJob", "bigquery.models.create"),
    _bq("drop_model", "BigqueryDropModelJob", "bigquery.models.delete"),
    _bq("export_model", "BigqueryExportModelJob", "bigquery.models.export"),
    _bq("evaluate_model", "BigqueryEvaluateModelJob", *_BQ_READ_MODEL),
    _bq("predict_model", "BigqueryPredictModelJob", *_BQ_READ_MODEL),
    _bq("explain_predict_model", "BigqueryExplainPredictModelJob", *_BQ_READ_MODEL),
    _bq("explain_forecast_model", "BigqueryExplainForecastModelJob", *_BQ_READ_MODEL),
    _bq("forecast_model", "BigqueryMLForecastJob", *_BQ_READ_MODEL),
    _bq("detect_anomalies_model", "BigqueryDetectAnomaliesModelJob", *_BQ_READ_MODEL),
    _bq("feature_importance", "BigqueryMLFeatureImportanceJob", *_BQ_READ_MODEL),
    _bq("global_explain", "BigqueryMLGlobalExplainJob", *_BQ_READ_MODEL),
    _bq("ml_advanced_weights", "BigqueryMLAdvancedWeightsJob", *_BQ_READ_MODEL),
    _bq("ml_arima_coefficients", "BigqueryMLArimaCoefficientsJob", *_BQ_READ_MODEL),
    _bq("ml_arima_evaluate", "BigqueryMLArimaEvaluateJob", *_BQ_READ_MODEL),
    _bq("ml_centroids", "BigqueryMLCentroidsJob", *_BQ_READ_MODEL),
    _bq("ml_confusion_matrix", "BigqueryMLConfusionMatrixJob", *_BQ_READ_MODEL),
    _bq("ml_feature_info", "BigqueryMLFeatureInfoJob", *_BQ_READ_MODEL),
    _bq("ml_principal_component_info", "BigqueryMLPrincipalComponentInfoJob", *_BQ_READ_MODEL),
    _bq("ml_principal_components", "BigqueryMLPrincipalComponentsJob", *_BQ_READ_MODEL),
    _bq("ml_recommend", "BigqueryMLRecommendJob", *_BQ_READ_MODEL),
    _bq("ml_reconstruction_loss", "BigqueryMLReconstructionLossJob", *_BQ_READ_MODEL),
    _bq("ml_roc_curve", "BigqueryMLRocCurveJob", *_BQ_READ_MODEL),
    _bq("ml_training_info", "BigqueryMLTrainingInfoJob", *_BQ_READ_MODEL),
    _bq("ml_trial_info", "BigqueryMLTrialInfoJob", *_BQ_READ_MODEL),
    _bq("ml_weights", "BigqueryMLWeightsJob", *_BQ_READ_MODEL),
    LauncherKind(
        name="UploadModel",
        job="aiplatform.models",
        modules=(f"{_V1}model.upload_model.launcher", "launcher"),
        job_types=("UploadModel",),
        # GCPC's UploadModelRequest names no serviceAccount: Vertex reads the artifact URI as
        # its service agent (models.upload reference, field serviceAccount)
        identity=JobIdentity(
            "lent",
            what="runs as the caller; the Vertex AI Service Agent reads the model artifacts for it",
        ),
        wrap=True,
        caller_permissions=("aiplatform.models.upload", "aiplatform.models.get"),
        cmek_inputs=("encryption_spec_key_name",),
        source="container/v1/model/upload_model; v1/model/upload_model",
    ),
    LauncherKind(
        name="ExportModel",
        job="aiplatform.models",
        modules=(f"{_V1}model.export_model.launcher",),
        job_types=("ExportModel",),
        identity=_CALLER,
        wrap=True,
        caller_permissions=("aiplatform.models.export", "aiplatform.models.get"),
        project_inputs=(),
        location_inputs=(),
        source="container/v1/model/export_model; v1/model/export_model",
    ),
    LauncherKind(
        name="DeleteModel",
        job="aiplatform.models",
        modules=(f"{_V1}model.delete_model.launcher",),
        job_types=("DeleteModel",),
        identity=_CALLER,
        wrap=True,
        caller_permissions=("aiplatform.models.delete",),
        project_inputs=(),
        location_inputs=(),
        source="container/v1/model/delete_model; v1/model/delete_model",
    ),
    LauncherKind(
        name="GetModel",
        job="aiplatform.models",
        modules=(
            f"{_V1}model.get_model.launcher",
            f"{GCPC_MODULE_PREFIX}_implementation.model.get_model.get_model",
        ),
        job_types=(),
        identity=_CALLER,
        wrap=True,
        caller_permissions=("aiplatform.models.get",),
        payload_flag="",
        source="container/v1/model/get_model; container/_implementation/model/get_model",
    ),
    LauncherKind(
        name="CreateEndpoint",
        job="aiplatform.endpoints",
        modules=(f"{_V1}endpoint.create_endpoint.launcher",),
        job_types=("CreateEndpoint",),
        identity=_CALLER,
        wrap=True,
        caller_permissions=("aiplatform.endpoints.create", "aiplatform.endpoints.get"),
        network_inputs=("network",),
        cmek_inputs=("encryption_spec_key_name",),
        source="container/v1/endpoint/create_endpoint; v1/endpoint/create_endpoint",
    ),
    LauncherKind(
        name="DeleteEndpoint",
        job="aiplatform.endpoints",
        modules=(f"{_V1}endpoint.delete_endpoint.launcher",),
        job_types=("DeleteEndpoint",),
        identity=_CALLER,
        wrap=True,
        caller_permissions=("aiplatform.endpoints.delete",),
        project_inputs=(),
        location_inputs=(),
        source="container/v1/endpoint/delete_endpoint; v1/endpoint/delete_endpoint",
    ),
    LauncherKind(
        name="DeployModel",
        job="aiplatform.endpoints",
        modules=(f"{_V1}endpoint.deploy_model.launcher",),
        job_types=("DeployModel",),
        identity=_CALLER,
        wrap=True,
        caller_permissions=(
            "aiplatform.endpoints.deploy",
            "aiplatform.endpoints.get",
            "aiplatform.models.get",
        ),
        caller_acts_as=True,  # actAs on the serving identity
        serving_identity=JobIdentity(
            "payload",
            payload_path=("deployed_model", "service_account"),
            input="service_account",
            what="DeployedModel service_account (the serving identity)",
        ),
        project_inputs=(),
        location_inputs=(),
        source="container/v1/endpoint/deploy_model; v1/endpoint/deploy_model",
    ),
    LauncherKind(
        name="UndeployModel",
        job="aiplatform.endpoints",
        modules=(f"{_V1}endpoint.undeploy_model.launcher",),
        job_types=("UndeployModel",),
        identity=_CALLER,
        wrap=True,
        caller_permissions=("aiplatform.endpoints.undeploy", "aiplatform.endpoints.get"),
        project_inputs=(),
        location_inputs=(),
        source="container/v1/endpoint/undeploy_model; v1/endpoint/undeploy_model",
    ),
    LauncherKind(
        name="ImportModelEvaluation",
        job="aiplatform.modelEvaluations",
        modules=(f"{GCPC_MODULE_PREFIX}_implementation.model_evaluation.import_model_evaluation",),
        job_types=(),
        identity=_CALLER,
        wrap=True,
        caller_permissions=("aiplatform.modelEvaluations.import", "aiplatform.models.get"),
        project_inputs=(),
        location_inputs=(),
        payload_flag="",
        source="container/_implementation/model_evaluation/import_model_evaluation.py",
    ),
    LauncherKind(
        name="ImportEvaluatedAnnotation",
        job="aiplatform.modelEvaluationSlices",
        modules=(
            f"{GCPC_MODULE_PREFIX}_implementation.model_evaluation.import_evaluated_annotation",
        ),
        job_types=(),
        identity=_CALLER,
        wrap=True,
        caller_permissions=("aiplatform.modelEvaluationSlices.import", "aiplatform.models.get"),
        project_inputs=(),
        location_inputs=(),
        payload_flag="",
        source="container/_implementation/model_evaluation/import_evaluated_annotation.py",
    ),
    LauncherKind(
        name="Wait",
        job="dataflow.jobs",
        modules=(f"{_V1}wait_gcp_resources.launcher",),
        job_types=("Wait",),
        identity=_CALLER,
        wrap=True,
        caller_permissions=("dataflow.jobs.get",),
        source="container/v1/wait_gcp_resources; v1/wait_gcp_resources",
    ),
    LauncherKind(
        name="VertexNotificationEmail",
        job="",
        modules=(f"{_V1}vertex_notification_email.executor",),
        job_types=("VertexNotificationEmail",),
        identity=_CALLER,
        wrap=True,
        caller_permissions=(),
        project_inputs=(),
        location_inputs=(),
        source="container/v1/vertex_notification_email; v1/vertex_notification_email",
    ),
    # ---- jobs no rewrite can give an identity of their own: refused
    _automl_training(
        "AutoMLTrainingJob",
        f"{_V1}aiplatform.remote_runner",
        (),
        "container/v1/aiplatform/remote_runner.py; v1/automl/training_job",
    ),
    _automl_training(
        "AutoMLImageTrainingJob",
        f"{_V1}automl_training_job.image.launcher",
        ("AutoMLImageTrainingJob",),
        "container/v1/automl_training_job/image; v1/automl/training_job",
    ),
    LauncherKind(
        name="InfraValidationJob",
        job="aiplatform.customJobs",
        modules=(f"{_V1}infra_validation_job.launcher",),
        job_types=("InfraValidationJob",),
        identity=JobIdentity(
            "service_agent",
            what="the Vertex AI Custom Code Service Agent (the launcher builds a CustomJob "
            "without service_account)",
        ),
        wrap=False,
        caller_permissions=("aiplatform.customJobs.create", "aiplatform.customJobs.get"),
        supported=False,
        refusal="the infra-validation launcher builds its CustomJob without a service account, "
        "so it runs as the Vertex AI Custom Code Service Agent; validate the model with a "
        "CustomTrainingJobOp instead",
        source="container/v1/infra_validation_job/remote_runner.py",
    ),
    LauncherKind(
        name="TemplatedCustomJob",
        job="aiplatform.customJobs",
        modules=(f"{GCPC_MODULE_PREFIX}_implementation.llm.templated_custom_job.launcher",),
        job_types=("TemplatedCustomJob",),
        identity=JobIdentity("unreadable", what="a base64 Jinja2 template rendered at run time"),
        wrap=False,
        caller_permissions=("aiplatform.customJobs.create", "aiplatform.customJobs.get"),
        caller_acts_as=True,
        supported=False,
        refusal="its CustomJob payload is a base64 Jinja2 template rendered at run time, so the "
        "job's identity cannot be read or pinned before submission",
        source="container/_implementation/llm/templated_custom_job",
    ),
)
"""Every GCPC launcher kind zt-pipelines knows (GCPC 2.x)."""

JOB_IDENTITY_INPUTS: Mapping[str, str] = {
    "service_account": "the identity of the job the component launches",
    "dataflow_service_account": "the Dataflow worker identity of the job the component launches",
    "service_account_email": "the Dataflow worker identity of the job the component launches",
}
"""Component inputs that, by GCPC's convention, name the identity of a job the step launches
(on launchers, and on GCPC's own Python/container components that start Dataflow or Vertex jobs
themselves, e.g. model evaluation's ``dataflow_service_account``). ``""`` means a default
identity; the rewrite pins the step's own identity there."""

_BY_MODULE: dict[str, tuple[LauncherKind, ...]] = {}
for _kind in CATALOGUE:
    for _module in _kind.modules:
        _BY_MODULE[_module] = (*_BY_MODULE.get(_module, ()), _kind)
_BY_NAME = {kind.name: kind for kind in CATALOGUE}
_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*$")


def by_name(name: str) -> LauncherKind:
    """The catalogue entry called ``name`` (``KeyError`` if none)."""
    return _BY_NAME[name]


def launcher_module(container: Mapping[str, Any]) -> str | None:
    """The module a container runs with ``python -m MODULE``, from its command then its args."""
    for key in ("command", "args"):
        parts = container.get(key)
        if not isinstance(parts, list):
            continue
        for index, part in enumerate(parts[:-1]):
            if part == "-m" and isinstance(parts[index + 1], str):
                module = parts[index + 1]
                return module if _MODULE.match(module) else None
        if key == "command" and parts:
            return None  # a command without -m: the args are the program's own
    return None


def launcher_type(container: Mapping[str, Any]) -> str | None:
    """The value of the launcher's ``--type`` argument (``None`` when absent or repeated)."""
    args = container.get("args")
    if not isinstance(args, list):
        return None
    found = [
        args[i + 1]
        for i, part in enumerate(args[:-1])
        if part == "--type" and isinstance(args[i + 1], str)
    ]
    return found[0] if len(found) == 1 else None


def identify_launcher(container: Mapping[str, Any]) -> LauncherKind | None:
    """The catalogue entry for an executor container, or ``None`` if it is no known launcher.

    A container is a known launcher when the module it runs is one of an entry's modules and
    its ``--type`` is one of the entry's types (entries without types take no ``--type``). The
    generic module name ``launcher`` (Google images that ship GCPC's launchers) is matched by
    ``--type`` only among entries that list it. Whether the payload has the structure the entry
    describes is checked by the rewrite (:mod:`zt_pipelines.spec.payload`), which refuses a
    payload it cannot read. An unknown module under :data:`GCPC_MODULE_PREFIX` returns
    ``None``; :func:`is_gcpc_launcher_module` tells the rewrite to refuse it.
    """
    module = launcher_module(container)
    if module is None:
        return None
    job_type = launcher_type(container)
    for kind in _BY_MODULE.get(module, ()):
        if (job_type is None and not kind.job_types) or job_type in kind.job_types:
            return kind
    return None


def is_gcpc_launcher_module(container: Mapping[str, Any]) -> str | None:
    """The module name when a container runs GCPC launcher code (known or not), else ``None``.

    GCPC launchers live under :data:`GCPC_MODULE_PREFIX`; Google images also ship them as the
    module ``launcher`` with a ``--type`` argument.
    """
    module = launcher_module(container)
    if module is None:
        return None
    if module.startswith(GCPC_MODULE_PREFIX):
        return module
    if module == "launcher" and launcher_type(container) is not None:
        return module
    return None
