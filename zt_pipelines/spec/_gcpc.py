# ruff: noqa: E501
"""GCPC 2.22.0 custom-job launcher constants, reproduced (GCPC is not a runtime dependency).

Generated from ``google_cloud_pipeline_components.v1.custom_job.component.custom_training_job``;
``tests/test_gcpc_equivalence.py`` checks them against the installed GCPC.
"""

from __future__ import annotations

from typing import Any

GCPC_VERSION = "2.22.0"

LAUNCHER_IMAGE = "gcr.io/ml-pipeline/google-cloud-pipeline-components:2.22.0"

LAUNCHER_COMMAND: tuple[str, ...] = (
    "python3",
    "-u",
    "-m",
    "google_cloud_pipeline_components.container.v1.custom_job.launcher",
)

LAUNCHER_ARGS: tuple[str, ...] = (
    "--type",
    "CustomJob",
    "--payload",
    '{"display_name": "{{$.inputs.parameters[\'display_name\']}}", "job_spec": {"worker_pool_specs": {{$.inputs.parameters[\'worker_pool_specs\']}}, "scheduling": {"timeout": "{{$.inputs.parameters[\'timeout\']}}", "restart_job_on_worker_restart": {{$.inputs.parameters[\'restart_job_on_worker_restart\']}}, "strategy": "{{$.inputs.parameters[\'strategy\']}}", "max_wait_duration": "{{$.inputs.parameters[\'max_wait_duration\']}}"}, "service_account": "{{$.inputs.parameters[\'service_account\']}}", "tensorboard": "{{$.inputs.parameters[\'tensorboard\']}}", "enable_web_access": {{$.inputs.parameters[\'enable_web_access\']}}, "network": "{{$.inputs.parameters[\'network\']}}", "reserved_ip_ranges": {{$.inputs.parameters[\'reserved_ip_ranges\']}}, "base_output_directory": {"output_uri_prefix": "{{$.inputs.parameters[\'base_output_directory\']}}"}, "persistent_resource_id": "{{$.inputs.parameters[\'persistent_resource_id\']}}", "psc_interface_config": {{$.inputs.parameters[\'psc_interface_config\']}}}, "labels": {{$.inputs.parameters[\'labels\']}}, "encryption_spec": {"kms_key_name": "{{$.inputs.parameters[\'encryption_spec_key_name\']}}"}}',
    "--project",
    "{{$.inputs.parameters['project']}}",
    "--location",
    "{{$.inputs.parameters['location']}}",
    "--gcp_resources",
    "{{$.outputs.parameters['gcp_resources'].output_file}}",
)

CUSTOM_JOB_INPUTS: dict[str, dict[str, Any]] = {
    "base_output_directory": {
        "defaultValue": "",
        "description": "The Cloud Storage location to store the "
        "output of this CustomJob or "
        "HyperparameterTuningJob. See [more "
        "information "
        "](https://cloud.google.com/vertex-ai/docs/reference/rest/v1/GcsDestination).",
        "isOptional": True,
        "parameterType": "STRING",
    },
    "display_name": {"description": "The name of the CustomJob.", "parameterType": "STRING"},
    "enable_web_access": {
        "defaultValue": False,
        "description": "Whether you want Vertex AI to enable [interactive "
        "shell access "
        "](https://cloud.google.com/vertex-ai/docs/training/monitor-debug-interactive-shell) "
        "to training containers. If `True`, you can access "
        "interactive shells at the URIs given by "
        "[CustomJob.web_access_uris][].",
        "isOptional": True,
        "parameterType": "BOOLEAN",
    },
    "encryption_spec_key_name": {
        "defaultValue": "",
        "description": "Customer-managed encryption key options "
        "for the CustomJob. If this is set, then "
        "all resources created by the CustomJob "
        "will be encrypted with the provided "
        "encryption key.",
        "isOptional": True,
        "parameterType": "STRING",
    },
    "labels": {
        "defaultValue": {},
        "description": "The labels with user-defined metadata to organize the "
        "CustomJob. See [more information](https://goo.gl/xmQnxf).",
        "isOptional": True,
        "parameterType": "STRUCT",
    },
    "location": {
        "defaultValue": "{{$.pipeline_google_cloud_location}}",
        "description": "Location for creating the custom training job. If not set, "
        "default to the location where the PipelineJob is run.",
        "isOptional": True,
        "parameterType": "STRING",
    },
    "max_wait_duration": {
        "defaultValue": "86400s",
        "description": "The maximum time to wait for the custom training "
        "job to be scheduled only if the scheduling "
        "strategy is set to FLEX_START. If set to 0, the "
        "job will wait indefinitely. The default is 24 "
        "hours. See [more "
        "information](https://cloud.google.com/vertex-ai/docs/reference/rest/v1/CustomJobSpec#Strategy).",
        "isOptional": True,
        "parameterType": "STRING",
    },
    "network": {
        "defaultValue": "",
        "description": "The full name of the Compute Engine network to which the "
        "job should be peered. For example, "
        "`projects/12345/global/networks/myVPC`. Format is of the "
        "form `projects/{project}/global/networks/{network}`. Where "
        "`{project}` is a project number, as in `12345`, and "
        "`{network}` is a network name. Private services access must "
        "already be configured for the network. If left unspecified, "
        "the job is not peered with any network.",
        "isOptional": True,
        "parameterType": "STRING",
    },
    "persistent_resource_id": {
        "defaultValue": "{{$.pipeline_persistent_resource_id}}",
        "description": "The ID of the PersistentResource in the same "
        "Project and Location which to run. The "
        "default value is a placeholder that will be "
        "resolved to the PipelineJob "
        "[RuntimeConfig](https://cloud.google.com/vertex-ai/docs/reference/rest/v1/projects.locations.pipelineJobs#PipelineJob.RuntimeConfig)'s "
        "persistent resource id at runtime. However, "
        "if the PipelineJob doesn't set Persistent "
        "Resource as the job level runtime, the "
        "placedholder will be resolved to an empty "
        "string and the custom job will be run on "
        "demand. If the value is set explicitly, the "
        "custom job will runs in the specified "
        "persistent resource, in this case, please "
        "note the network and CMEK configs on the job "
        "should be consistent with those on the "
        "PersistentResource, otherwise, the job will "
        "be rejected.",
        "isOptional": True,
        "parameterType": "STRING",
    },
    "project": {
        "defaultValue": "{{$.pipeline_google_cloud_project_id}}",
        "description": "Project to create the custom training job in. Defaults to "
        "the project in which the PipelineJob is run.",
        "isOptional": True,
        "parameterType": "STRING",
    },
    "psc_interface_config": {
        "defaultValue": {},
        "description": "Configuration CustomJob with PSC-I. See [more "
        "information](https://cloud.google.com/vertex-ai/docs/reference/rest/v1/CustomJobSpec#PscInterfaceConfig).",
        "isOptional": True,
        "parameterType": "STRUCT",
    },
    "reserved_ip_ranges": {
        "defaultValue": [],
        "description": "A list of names for the reserved IP ranges under "
        "the VPC network that can be used for this job. "
        "If set, we will deploy the job within the "
        "provided IP ranges. Otherwise, the job will be "
        "deployed to any IP ranges under the provided VPC "
        "network.",
        "isOptional": True,
        "parameterType": "LIST",
    },
    "restart_job_on_worker_restart": {
        "defaultValue": False,
        "description": "Restarts the entire CustomJob if a "
        "worker gets restarted. This feature "
        "can be used by distributed training "
        "jobs that are not resilient to "
        "workers leaving and joining a job.",
        "isOptional": True,
        "parameterType": "BOOLEAN",
    },
    "service_account": {
        "defaultValue": "",
        "description": "Sets the default service account for workload "
        "run-as account. The [service account "
        "](https://cloud.google.com/vertex-ai/docs/pipelines/configure-project#service-account) "
        "running the pipeline submitting jobs must have "
        "act-as permission on this run-as account. If "
        "unspecified, the Vertex AI Custom Code [Service "
        "Agent "
        "](https://cloud.google.com/vertex-ai/docs/general/access-control#service-agents) "
        "for the CustomJob's project.",
        "isOptional": True,
        "parameterType": "STRING",
    },
    "strategy": {
        "defaultValue": "STANDARD",
        "description": "The strategy to use for the custom training job. The "
        "default is 'STANDARD'. See [more "
        "information](https://cloud.google.com/vertex-ai/docs/reference/rest/v1/CustomJobSpec#Strategy).",
        "isOptional": True,
        "parameterType": "STRING",
    },
    "tensorboard": {
        "defaultValue": "",
        "description": "The name of a Vertex AI TensorBoard resource to which "
        "this CustomJob will upload TensorBoard logs.",
        "isOptional": True,
        "parameterType": "STRING",
    },
    "timeout": {
        "defaultValue": "604800s",
        "description": "The maximum job running time. The default is 7 days. A "
        "duration in seconds with up to nine fractional digits, "
        "terminated by 's', for example: \"3.5s\".",
        "isOptional": True,
        "parameterType": "STRING",
    },
    "worker_pool_specs": {
        "defaultValue": [],
        "description": "Serialized json spec of the worker pools "
        "including machine type and Docker image. All "
        "worker pools except the first one are optional "
        "and can be skipped by providing an empty value. "
        "See [more "
        "information](https://cloud.google.com/vertex-ai/docs/reference/rest/v1/CustomJobSpec#WorkerPoolSpec).",
        "isOptional": True,
        "parameterType": "LIST",
    },
}

CUSTOM_JOB_OUTPUTS: dict[str, dict[str, Any]] = {
    "gcp_resources": {
        "description": "Serialized JSON of `gcp_resources` "
        "[proto](https://github.com/kubeflow/pipelines/tree/master/components/google-cloud/google_cloud_pipeline_components/proto) "
        "which tracks the CustomJob.",
        "parameterType": "STRING",
    }
}
